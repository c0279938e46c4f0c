package store

import (
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// claimT0 is when the claim tests' deliveries fall due.
var claimT0 = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

// claim runs ClaimDue in its own write transaction, as a dispatcher does.
func claim(t *testing.T, db *DB, now time.Time, limit int, owner string, lease time.Duration) []Delivery {
	t.Helper()
	var got []Delivery
	if err := db.Update(func(tx *Tx) error {
		var err error
		got, err = tx.ClaimDue(now, limit, owner, lease)
		return err
	}); err != nil {
		t.Fatalf("ClaimDue for %s: %v", owner, err)
	}
	return got
}

func deliveryByID(t *testing.T, db *DB, id string) Delivery {
	t.Helper()
	var d Delivery
	if err := db.View(func(tx *Tx) error {
		var ok bool
		var err error
		d, ok, err = tx.Delivery(id)
		if err == nil && !ok {
			t.Errorf("no delivery %s", id)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return d
}

func ids(ds []Delivery) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.ID
	}
	return out
}

// Two replicas claiming from one PostgreSQL store at the same time: each
// delivery goes to exactly one of them. Without the claim moving the due
// time, both would get every delivery (TestDueDeliveriesAloneCollide).
func TestClaimDueTwoOwnersConcurrently(t *testing.T) {
	db := openPostgres(t, Options{})
	const events = 30
	var want []string
	for range events {
		e := enqueueFor(t, db, claimT0, "log", "webhook:ops")
		want = append(want, DeliveryID(e.ID, "log"), DeliveryID(e.ID, "webhook:ops"))
	}
	now := claimT0.Add(time.Minute)
	start := make(chan struct{})
	got := map[string][]string{}
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	for _, owner := range []string{"a", "b"} {
		wg.Go(func() {
			<-start
			// Bounded: a ClaimDue that left deliveries due would hand
			// them out for ever.
			for range len(want) + 1 {
				var batch []Delivery
				err := db.Update(func(tx *Tx) error {
					var err error
					batch, err = tx.ClaimDue(now, 3, owner, time.Hour)
					return err
				})
				if err != nil {
					t.Errorf("ClaimDue for %s: %v", owner, err)
					return
				}
				if len(batch) == 0 {
					return
				}
				mu.Lock()
				got[owner] = append(got[owner], ids(batch)...)
				mu.Unlock()
			}
		})
	}
	close(start)
	wg.Wait()

	t.Logf("a claimed %d, b claimed %d", len(got["a"]), len(got["b"]))
	claimedBy := map[string]string{}
	for owner, list := range got {
		for _, id := range list {
			if other, dup := claimedBy[id]; dup {
				t.Errorf("%s claimed by %s and by %s", id, other, owner)
			}
			claimedBy[id] = owner
		}
	}
	for _, id := range want {
		owner, ok := claimedBy[id]
		if !ok {
			t.Errorf("%s claimed by nobody", id)
			continue
		}
		d := deliveryByID(t, db, id)
		if d.ClaimedBy != owner || !d.ClaimedUntil.Equal(now.Add(time.Hour)) || !d.NextAttempt.Equal(d.ClaimedUntil) ||
			d.State != DeliveryPending || d.Attempts != 0 {
			t.Errorf("%s claimed by %s, stored as %+v", id, owner, d)
		}
	}
	if len(claimedBy) != len(want) {
		t.Errorf("%d deliveries claimed, want %d", len(claimedBy), len(want))
	}
}

// The protection off: selecting with DueDeliveries, as the dispatcher did
// before claims, two replicas get the same deliveries. ClaimDue in the
// same sequence gives the second one nothing.
func TestDueDeliveriesAloneCollide(t *testing.T) {
	db := openBackend(t, Options{})
	e := enqueueFor(t, db, claimT0, "log", "webhook:ops")
	now := claimT0.Add(time.Second)
	read := func() []string {
		var due []Delivery
		if err := db.View(func(tx *Tx) error {
			var err error
			due, err = tx.DueDeliveries(now, 0)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return ids(due)
	}
	a, b := read(), read()
	if len(a) != 2 || !slices.Equal(a, b) {
		t.Fatalf("read-only selection: a got %v, b got %v; want both to get both", a, b)
	}

	ca := ids(claim(t, db, now, 0, "a", time.Minute))
	cb := ids(claim(t, db, now, 0, "b", time.Minute))
	if len(ca) != 2 || len(cb) != 0 {
		t.Errorf("claims: a got %v, b got %v; want a both and b none", ca, cb)
	}
	if got := read(); len(got) != 0 {
		t.Errorf("claimed deliveries still due: %v", got)
	}
	if d := deliveryByID(t, db, DeliveryID(e.ID, "log")); d.ClaimedBy != "a" {
		t.Errorf("claimed by %q, want a", d.ClaimedBy)
	}
}

// A claim nobody records runs out: the delivery is due again, another
// owner takes it, and the lost claim cost it no attempt.
func TestClaimRunsOutForAnotherOwner(t *testing.T) {
	db := openBackend(t, Options{})
	e := enqueueFor(t, db, claimT0, "webhook:ops")
	id := DeliveryID(e.ID, "webhook:ops")
	const lease = time.Minute

	if got := claim(t, db, claimT0, 0, "a", lease); len(got) != 1 || got[0].ClaimedBy != "a" || !got[0].ClaimedUntil.Equal(claimT0.Add(lease)) {
		t.Fatalf("a claimed %+v", got)
	}
	before := claimT0.Add(lease - time.Nanosecond)
	if got := claim(t, db, before, 0, "b", lease); len(got) != 0 {
		t.Fatalf("b claimed %v within a's lease", ids(got))
	}
	if err := db.View(func(tx *Tx) error {
		due, err := tx.DueDeliveries(before, 0)
		if err != nil || len(due) != 0 {
			t.Errorf("DueDeliveries within the lease = %v, %v", ids(due), err)
		}
		next, ok, err := tx.NextDue()
		if err != nil || !ok || !next.Equal(claimT0.Add(lease)) {
			t.Errorf("NextDue = %v, %v, %v; want the lease's end %v", next, ok, err, claimT0.Add(lease))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	got := claim(t, db, claimT0.Add(lease), 0, "b", lease)
	if len(got) != 1 || got[0].ID != id {
		t.Fatalf("b claimed %v after a's lease, want %s", ids(got), id)
	}
	d := deliveryByID(t, db, id)
	if d.ClaimedBy != "b" || !d.ClaimedUntil.Equal(claimT0.Add(2*lease)) || d.Attempts != 0 || d.State != DeliveryPending {
		t.Errorf("after b's claim: %+v", d)
	}
}

// Recording an outcome ends the claim: a settled delivery carries none
// whoever settles it, and a retry the recorder reschedules is due again
// at its backoff, for anyone.
func TestRecordingClearsClaim(t *testing.T) {
	db := openBackend(t, Options{})
	e := enqueueFor(t, db, claimT0, "log", "webhook:ops")
	delivered, retried := DeliveryID(e.ID, "log"), DeliveryID(e.ID, "webhook:ops")
	if got := claim(t, db, claimT0, 0, "a", time.Minute); len(got) != 2 {
		t.Fatalf("claimed %v", ids(got))
	}
	retryAt := claimT0.Add(5 * time.Minute)
	if err := db.Update(func(tx *Tx) error {
		if _, err := tx.ModifyDelivery(delivered, func(d *Delivery) bool {
			d.State, d.Attempts, d.DeliveredAt = DeliveryDelivered, d.Attempts+1, claimT0
			return true
		}); err != nil {
			return err
		}
		d, _, err := tx.Delivery(retried)
		if err != nil {
			return err
		}
		d.Attempts++
		d.LastError = "HTTP 503"
		d.NextAttempt, d.ClaimedBy, d.ClaimedUntil = retryAt, "", time.Time{}
		return tx.UpdateDelivery(d)
	}); err != nil {
		t.Fatal(err)
	}

	if d := deliveryByID(t, db, delivered); d.ClaimedBy != "" || !d.ClaimedUntil.IsZero() || d.State != DeliveryDelivered {
		t.Errorf("delivered one still claimed: %+v", d)
	}
	if d := deliveryByID(t, db, retried); d.ClaimedBy != "" || !d.ClaimedUntil.IsZero() || !d.NextAttempt.Equal(retryAt) || d.Attempts != 1 {
		t.Errorf("retried one: %+v", d)
	}
	if got := claim(t, db, retryAt.Add(-time.Second), 0, "b", time.Minute); len(got) != 0 {
		t.Errorf("claimed before its backoff ran out: %v", ids(got))
	}
	got := claim(t, db, retryAt, 0, "b", time.Minute)
	if len(got) != 1 || got[0].ID != retried || got[0].Attempts != 1 {
		t.Errorf("b claimed %+v, want only the retried one", got)
	}
}

// The claim shows in `rugwatch alerts --json` while it lasts, and adds
// nothing to an unclaimed delivery's JSON.
func TestClaimedDeliveryJSON(t *testing.T) {
	db := openBackend(t, Options{})
	e := enqueueFor(t, db, claimT0, "log")
	id := DeliveryID(e.ID, "log")
	plain, err := json.Marshal(deliveryByID(t, db, id))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(plain), "claimed") {
		t.Errorf("unclaimed delivery's JSON mentions a claim: %s", plain)
	}
	claim(t, db, claimT0, 0, "replica-1", time.Minute)
	claimed, err := json.Marshal(deliveryByID(t, db, id))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"claimed_by":"replica-1"`, `"claimed_until":"2026-11-25T10:01:00Z"`, `"next_attempt":"2026-11-25T10:01:00Z"`, `"state":"pending"`, `"attempts":0`} {
		if !strings.Contains(string(claimed), want) {
			t.Errorf("claimed delivery's JSON lacks %s: %s", want, claimed)
		}
	}
}

func TestClaimDueRefuses(t *testing.T) {
	db := openBackend(t, Options{})
	e := enqueueFor(t, db, claimT0, "log")
	for name, fn := range map[string]func(tx *Tx) error{
		"empty owner": func(tx *Tx) error { _, err := tx.ClaimDue(claimT0, 0, "", time.Minute); return err },
		"no lease":    func(tx *Tx) error { _, err := tx.ClaimDue(claimT0, 0, "a", 0); return err },
	} {
		if err := db.Update(fn); err == nil {
			t.Errorf("%s: claimed", name)
		}
	}
	if err := db.View(func(tx *Tx) error { _, err := tx.ClaimDue(claimT0, 0, "a", time.Minute); return err }); err == nil {
		t.Error("claimed in a read transaction")
	}
	if d := deliveryByID(t, db, DeliveryID(e.ID, "log")); d.ClaimedBy != "" {
		t.Errorf("a refused claim stuck: %+v", d)
	}
}
