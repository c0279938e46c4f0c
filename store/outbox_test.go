package store

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/rugwatch/rugwatch"
)

// enqueueFor appends one event and queues it for channels in the same
// transaction, as the monitor does.
func enqueueFor(t *testing.T, db *DB, next time.Time, channels ...string) rugwatch.Event {
	t.Helper()
	var e rugwatch.Event
	if err := db.Update(func(tx *Tx) error {
		e = rugwatch.Event{Type: rugwatch.EventToolDrifted, Severity: rugwatch.SeverityCritical, Server: "s", Tool: "t"}
		if err := tx.AppendEvent(&e); err != nil {
			return err
		}
		for _, ch := range channels {
			if err := tx.EnqueueDelivery(Delivery{
				ID: DeliveryID(e.ID, ch), EventID: e.ID, EventSeq: e.Seq, Channel: ch, NextAttempt: next,
			}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return e
}

func TestOutboxEmptyBeforeFirstEnqueue(t *testing.T) {
	db := openTest(t)
	if err := db.View(func(tx *Tx) error {
		due, err := tx.DueDeliveries(time.Now(), 0)
		if err != nil || len(due) != 0 {
			t.Errorf("DueDeliveries = %v, %v", due, err)
		}
		if _, ok, err := tx.NextDue(); ok || err != nil {
			t.Errorf("NextDue ok=%v err=%v", ok, err)
		}
		if _, ok, err := tx.Delivery("dlv_x_log"); ok || err != nil {
			t.Errorf("Delivery ok=%v err=%v", ok, err)
		}
		all, err := tx.ListDeliveries("", 0)
		if err != nil || len(all) != 0 {
			t.Errorf("ListDeliveries = %v, %v", all, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func TestEnqueueInEventTxIsIdempotent(t *testing.T) {
	db := openTest(t)
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	e := enqueueFor(t, db, t0, "log", "webhook:ops")

	// Re-queueing the same (event, channel) changes nothing, even with
	// different fields.
	if err := db.Update(func(tx *Tx) error {
		return tx.EnqueueDelivery(Delivery{
			ID: DeliveryID(e.ID, "log"), EventID: e.ID, EventSeq: e.Seq, Channel: "log",
			NextAttempt: t0.Add(time.Hour), Attempts: 7,
		})
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.View(func(tx *Tx) error {
		d, ok, err := tx.Delivery(DeliveryID(e.ID, "log"))
		if err != nil || !ok {
			t.Fatalf("Delivery: ok=%v err=%v", ok, err)
		}
		if d.State != DeliveryPending || d.Attempts != 0 || !d.NextAttempt.Equal(t0) || d.CreatedAt.IsZero() {
			t.Errorf("delivery changed by re-enqueue or defaults missing: %+v", d)
		}
		if d.ID != "dlv_"+e.ID+"_log" {
			t.Errorf("ID = %q", d.ID)
		}
		due, err := tx.DueDeliveries(t0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(due) != 2 {
			t.Errorf("due = %d deliveries, want 2 (no duplicate index entry)", len(due))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func TestEnqueueRolledBackWithItsEvent(t *testing.T) {
	db := openTest(t)
	_ = db.Update(func(tx *Tx) error {
		e := rugwatch.Event{Type: rugwatch.EventToolNew, Server: "s"}
		if err := tx.AppendEvent(&e); err != nil {
			return err
		}
		if err := tx.EnqueueDelivery(Delivery{ID: DeliveryID(e.ID, "log"), EventID: e.ID, EventSeq: e.Seq, Channel: "log"}); err != nil {
			return err
		}
		return errRollback
	})
	if err := db.View(func(tx *Tx) error {
		all, err := tx.ListDeliveries("", 0)
		if err != nil || len(all) != 0 {
			t.Errorf("after rollback: %v, %v", all, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

type rollback struct{}

func (rollback) Error() string { return "rollback" }

var errRollback error = rollback{}

func TestDueDeliveriesOrderAndLimit(t *testing.T) {
	db := openTest(t)
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	late := enqueueFor(t, db, t0.Add(2*time.Minute), "log")
	early := enqueueFor(t, db, t0.Add(time.Minute), "log")
	atOnce := enqueueFor(t, db, time.Time{}, "log") // zero: due at once
	future := enqueueFor(t, db, t0.Add(time.Hour), "log")

	if err := db.View(func(tx *Tx) error {
		due, err := tx.DueDeliveries(t0.Add(2*time.Minute), 0)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, d := range due {
			got = append(got, d.EventID)
		}
		want := []string{atOnce.ID, early.ID, late.ID}
		if len(got) != len(want) {
			t.Fatalf("due = %v, want %v", got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("due[%d] = %s, want %s", i, got[i], want[i])
			}
		}
		lim, err := tx.DueDeliveries(t0.Add(2*time.Minute), 1)
		if err != nil || len(lim) != 1 || lim[0].EventID != atOnce.ID {
			t.Errorf("limit 1: %v, %v", lim, err)
		}
		next, ok, err := tx.NextDue()
		if err != nil || !ok || !next.IsZero() {
			t.Errorf("NextDue = %v %v %v, want zero time", next, ok, err)
		}
		_ = future
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func TestUpdateDeliveryKeepsIndexConsistent(t *testing.T) {
	db := openTest(t)
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	a := enqueueFor(t, db, t0, "webhook:ops")
	b := enqueueFor(t, db, t0.Add(time.Second), "webhook:ops")
	idA, idB := DeliveryID(a.ID, "webhook:ops"), DeliveryID(b.ID, "webhook:ops")

	update := func(id string, f func(*Delivery)) {
		t.Helper()
		if err := db.Update(func(tx *Tx) error {
			d, ok, err := tx.Delivery(id)
			if err != nil || !ok {
				t.Fatalf("Delivery %s: %v %v", id, ok, err)
			}
			f(&d)
			return tx.UpdateDelivery(d)
		}); err != nil {
			t.Fatal(err)
		}
	}
	// Reschedule a behind b: b becomes the next due.
	update(idA, func(d *Delivery) { d.Attempts++; d.NextAttempt = t0.Add(time.Minute); d.LastError = "HTTP 503" })
	check := func(now time.Time, wantIDs ...string) {
		t.Helper()
		if err := db.View(func(tx *Tx) error {
			due, err := tx.DueDeliveries(now, 0)
			if err != nil {
				return err
			}
			if len(due) != len(wantIDs) {
				t.Fatalf("due at %v: %d deliveries, want %v", now, len(due), wantIDs)
			}
			for i, d := range due {
				if d.ID != wantIDs[i] {
					t.Errorf("due[%d] = %s, want %s", i, d.ID, wantIDs[i])
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	check(t0.Add(30*time.Second), idB)
	check(t0.Add(time.Minute), idB, idA)

	update(idB, func(d *Delivery) { d.State = DeliveryDelivered; d.DeliveredAt = t0.Add(2 * time.Second) })
	update(idA, func(d *Delivery) { d.State = DeliveryDead; d.LastError = "HTTP 400" })
	check(t0.Add(24 * time.Hour)) // nothing pending
	if err := db.View(func(tx *Tx) error {
		if _, ok, err := tx.NextDue(); ok || err != nil {
			t.Errorf("NextDue with nothing pending: ok=%v err=%v", ok, err)
		}
		dead, err := tx.ListDeliveries(DeliveryDead, 0)
		if err != nil || len(dead) != 1 || dead[0].ID != idA || dead[0].Attempts != 1 || dead[0].LastError != "HTTP 400" {
			t.Errorf("dead = %+v, %v", dead, err)
		}
		all, err := tx.ListDeliveries("", 0)
		if err != nil || len(all) != 2 || all[0].ID != idB || all[1].ID != idA {
			t.Errorf("all (newest first) = %+v, %v", all, err)
		}
		one, err := tx.ListDeliveries("", 1)
		if err != nil || len(one) != 1 || one[0].ID != idB {
			t.Errorf("limit 1 = %+v, %v", one, err)
		}
		if _, err := tx.ListDeliveries("bogus", 0); err == nil {
			t.Error("ListDeliveries accepted an unknown state")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// Back to pending (an operator retry): indexed again.
	update(idA, func(d *Delivery) { d.State = DeliveryPending; d.NextAttempt = t0 })
	check(t0, idA)
}

func TestUpdateDeliveryRejects(t *testing.T) {
	db := openTest(t)
	e := enqueueFor(t, db, time.Time{}, "log")
	id := DeliveryID(e.ID, "log")
	err := db.Update(func(tx *Tx) error {
		if err := tx.UpdateDelivery(Delivery{ID: "dlv_missing_log", EventID: "missing", Channel: "log", State: DeliveryDead}); err == nil {
			t.Error("updated a missing delivery")
		}
		d, _, _ := tx.Delivery(id)
		d.Channel = "webhook:other"
		if err := tx.UpdateDelivery(d); err == nil {
			t.Error("changed a delivery's channel")
		}
		d, _, _ = tx.Delivery(id)
		d.State = "sent"
		if err := tx.UpdateDelivery(d); err == nil {
			t.Error("accepted an unknown state")
		}
		if err := tx.EnqueueDelivery(Delivery{ID: "", EventID: "x", Channel: "log"}); err == nil {
			t.Error("enqueued an empty id")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestEventBySeq(t *testing.T) {
	db := openTest(t)
	evs := appendN(t, db, 3)
	if err := db.View(func(tx *Tx) error {
		e, ok, err := tx.Event(2)
		if err != nil || !ok {
			t.Fatalf("Event(2): %v %v", ok, err)
		}
		if e.ID != evs[1].ID || e.Seq != 2 || e.Message != evs[1].Message {
			t.Errorf("Event(2) = %+v, want %+v", e, evs[1])
		}
		if _, ok, err := tx.Event(99); ok || err != nil {
			t.Errorf("Event(99): ok=%v err=%v", ok, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// The outbox survives a close and reopen, and a read-only open of a file
// that never queued anything still reads (the sub-buckets are lazy).
func TestOutboxPersistsAndReadsReadOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rugwatch.db")
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	ro, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := ro.View(func(tx *Tx) error {
		_, err := tx.ListDeliveries("", 0)
		return err
	}); err != nil {
		t.Errorf("read-only list of a fresh outbox: %v", err)
	}
	_ = ro.Close()

	db, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := enqueueFor(t, db, time.Time{}, "email:security")
	_ = db.Close()
	db, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.View(func(tx *Tx) error {
		d, ok, err := tx.Delivery(DeliveryID(e.ID, "email:security"))
		if err != nil || !ok || d.EventSeq != e.Seq || d.Channel != "email:security" {
			t.Errorf("after reopen: %+v %v %v", d, ok, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// ModifyDelivery changes a delivery as UpdateDelivery does, reading it
// once: the due index follows its state, fn may leave it alone, and what
// UpdateDelivery refuses it refuses.
func TestModifyDelivery(t *testing.T) {
	db := openTest(t)
	now := time.Now()
	e := enqueueFor(t, db, now, "log")
	id := DeliveryID(e.ID, "log")
	if err := db.Update(func(tx *Tx) error {
		if ok, err := tx.ModifyDelivery("dlv_nope", func(*Delivery) bool { t.Error("fn called for no delivery"); return true }); ok || err != nil {
			t.Errorf("no such delivery: ok %v, %v", ok, err)
		}
		if ok, err := tx.ModifyDelivery(id, func(d *Delivery) bool { d.State = DeliveryDelivered; return false }); !ok || err != nil {
			t.Errorf("left alone: ok %v, %v", ok, err)
		}
		if due, _ := tx.DueDeliveries(now, 0); len(due) != 1 {
			t.Errorf("fn said no, yet %d due", len(due))
		}
		if _, err := tx.ModifyDelivery(id, func(d *Delivery) bool { d.Channel = "webhook"; return true }); err == nil {
			t.Error("a delivery's channel changed")
		}
		if _, err := tx.ModifyDelivery(id, func(d *Delivery) bool { d.State = "lost"; return true }); err == nil {
			t.Error("an unknown state was stored")
		}
		_, err := tx.ModifyDelivery(id, func(d *Delivery) bool { d.State, d.Attempts, d.DeliveredAt = DeliveryDelivered, 1, now; return true })
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.View(func(tx *Tx) error {
		if due, _ := tx.DueDeliveries(now, 0); len(due) != 0 {
			t.Errorf("delivered, still %d due", len(due))
		}
		d, ok, err := tx.Delivery(id)
		if err != nil || !ok || d.State != DeliveryDelivered || d.Attempts != 1 {
			t.Errorf("stored %+v, %v %v", d, ok, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
