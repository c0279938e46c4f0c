package notify

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rugwatch/rugwatch/store"
	"github.com/rugwatch/rugwatch/testkit"
)

// The claim tests run replicas of the dispatcher on one PostgreSQL
// store, what `rugwatch serve` replicas share, whatever
// RUGWATCH_TEST_STORE picks.

// replica is a dispatcher named owner with a short lease, sending to one
// webhook, logging at debug level to logs (every delivery it settles
// writes a line, which running.eventually waits on).
func replica(t *testing.T, db *store.DB, owner string, lease time.Duration, url string, logs *testkit.Output) *Dispatcher {
	t.Helper()
	return &Dispatcher{DB: db, Owner: owner, Lease: lease, Backoff: tiny,
		Channels: ByName([]Notifier{webhook(t, "ops", url)}),
		Log:      slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
}

// pass runs d.DeliverDue in the background; its result arrives on the
// returned channel.
func pass(ctx context.Context, d *Dispatcher) <-chan error {
	done := make(chan error, 1)
	go func() { done <- d.DeliverDue(ctx) }()
	return done
}

// await fails the test if ch does not yield within a bound that only a
// hung dispatcher reaches.
func await[T any](t *testing.T, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(30 * time.Second):
		t.Fatalf("gave up waiting for %s", what)
		panic("unreachable")
	}
}

// A replica killed in the middle of a send records nothing; its claim
// runs out and another replica delivers the event, which the receiver
// sees twice under one webhook-id: at least once, nothing lost.
func TestReplicaKilledMidSendLosesNothing(t *testing.T) {
	noLeaks(t)
	db := openPostgres(t)
	entered, release := make(chan struct{}), make(chan struct{})
	rcv := newReceiver(t, []string{testSecretA}, func(n int) (int, http.Header) {
		if n == 0 { // a's request: hang until the test ends
			close(entered)
			<-release
		}
		return http.StatusOK, nil
	})
	t.Cleanup(func() { close(release) }) // before the receiver closes
	e := record(t, db, driftEvent(), "webhook:ops")
	const lease = 300 * time.Millisecond
	logs := &testkit.Output{}

	ctxA, killA := context.WithCancel(context.Background())
	doneA := pass(ctxA, replica(t, db, "a", lease, rcv.URL(), logs))
	await(t, "a's request", entered)
	claimed, _ := getDelivery(t, db, e.ID, "webhook:ops")
	if claimed.ClaimedBy != "a" || claimed.State != store.DeliveryPending || claimed.Attempts != 0 {
		t.Fatalf("while a sends: %+v", claimed)
	}
	killA()
	if err := await(t, "a to stop", doneA); err != nil {
		t.Fatalf("a: %v", err)
	}
	if d, _ := getDelivery(t, db, e.ID, "webhook:ops"); d != claimed {
		t.Fatalf("a recorded after it was killed:\nbefore %+v\nafter  %+v", claimed, d)
	}

	b := run(t, replica(t, db, "b", lease, rcv.URL(), logs), logs)
	b.eventually(t, "b's delivery", stateIs(t, db, e.ID, "webhook:ops", store.DeliveryDelivered))

	got := rcv.deliveries()
	if len(got) != 2 {
		t.Fatalf("receiver saw %d requests, want a's and b's", len(got))
	}
	for i, g := range got {
		if g.ID != e.ID || g.ValidSigs != 1 {
			t.Errorf("request %d: webhook-id %q (%d valid signatures), want %q signed", i, g.ID, g.ValidSigs, e.ID)
		}
	}
	if got[1].At.Before(claimed.ClaimedUntil) {
		t.Errorf("b sent at %v, before a's lease ran out at %v", got[1].At, claimed.ClaimedUntil)
	}
	d, _ := getDelivery(t, db, e.ID, "webhook:ops")
	if d.Attempts != 1 || d.ClaimedBy != "" || !d.ClaimedUntil.IsZero() || d.LastError != "" || d.DeliveredAt.IsZero() {
		t.Errorf("delivered: %+v; want one attempt (the lost claim is none) and no claim", d)
	}
}

// A replica whose send outlasts its lease still records what came of it,
// though another replica took the delivery over meanwhile; whichever
// records second never turns a delivered delivery back to pending, and a
// failure leaves the other's live claim alone.
func TestTakenOverDeliveryRecordsBoth(t *testing.T) {
	for _, tc := range []struct {
		name   string
		first  int // a's answer, recorded first
		second int // b's answer
	}{
		{"first delivers", http.StatusOK, http.StatusServiceUnavailable},
		{"first fails", http.StatusServiceUnavailable, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			noLeaks(t)
			db := openPostgres(t)
			entered := []chan struct{}{make(chan struct{}), make(chan struct{})}
			release := []chan struct{}{make(chan struct{}), make(chan struct{})}
			answer := []int{tc.first, tc.second}
			rcv := newReceiver(t, []string{testSecretA}, func(n int) (int, http.Header) {
				if n > 1 {
					t.Errorf("request %d: only a and b should send", n)
					return http.StatusOK, nil
				}
				close(entered[n])
				<-release[n]
				return answer[n], nil
			})
			var once [2]sync.Once
			free := func(n int) { once[n].Do(func() { close(release[n]) }) }
			t.Cleanup(func() { free(0); free(1) }) // before the receiver closes
			e := record(t, db, driftEvent(), "webhook:ops")
			logs := &testkit.Output{}
			const lease = 300 * time.Millisecond

			a := replica(t, db, "a", lease, rcv.URL(), logs)
			doneA := pass(context.Background(), a)
			await(t, "a's request", entered[0])
			// b's clock runs an hour ahead: for b, a's lease has run out.
			b := replica(t, db, "b", lease, rcv.URL(), logs)
			b.Now = func() time.Time { return time.Now().Add(time.Hour) }
			doneB := pass(context.Background(), b)
			await(t, "b's request", entered[1])
			takenOver, _ := getDelivery(t, db, e.ID, "webhook:ops")
			if takenOver.ClaimedBy != "b" {
				t.Fatalf("b did not take the delivery over: %+v", takenOver)
			}

			free(0)
			if err := await(t, "a's record", doneA); err != nil {
				t.Fatalf("a: %v", err)
			}
			d, _ := getDelivery(t, db, e.ID, "webhook:ops")
			if tc.first == http.StatusOK {
				if d.State != store.DeliveryDelivered || d.Attempts != 1 || d.ClaimedBy != "" {
					t.Fatalf("a's delivery not recorded over b's claim: %+v", d)
				}
			} else if d.State != store.DeliveryPending || d.Attempts != 1 || !strings.Contains(d.LastError, "503") ||
				d.ClaimedBy != "b" || !d.NextAttempt.Equal(takenOver.ClaimedUntil) {
				t.Fatalf("a's failure should count an attempt and keep b's claim: %+v", d)
			}

			free(1)
			if err := await(t, "b's record", doneB); err != nil {
				t.Fatalf("b: %v", err)
			}
			d, _ = getDelivery(t, db, e.ID, "webhook:ops")
			wantAttempts := 1
			if tc.first != http.StatusOK {
				wantAttempts = 2
			}
			if d.State != store.DeliveryDelivered || d.Attempts != wantAttempts || d.ClaimedBy != "" || d.DeliveredAt.IsZero() {
				t.Errorf("after both recorded: %+v; want delivered after %d attempts, no claim", d, wantAttempts)
			}
			if got := rcv.deliveries(); len(got) != 2 || got[0].ID != e.ID || got[1].ID != e.ID {
				t.Errorf("receiver saw %+v", got)
			}
		})
	}
}

// claimCounter is a DeliveryObserver that also counts claims, the way
// ops registers a metric per replica.
type claimCounter struct {
	mu      sync.Mutex
	claimed map[string]int
}

func (c *claimCounter) Attempted(string, string) {}

func (c *claimCounter) Claimed(owner string, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.claimed == nil {
		c.claimed = map[string]int{}
	}
	c.claimed[owner] += n
}

func (c *claimCounter) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for k, v := range c.claimed {
		out[k] = v
	}
	return out
}

// Two live replicas on one outbox: every delivery delivered, and, with
// nobody dying, none sent twice.
func TestReplicasShareOutbox(t *testing.T) {
	noLeaks(t)
	db := openPostgres(t)
	rcv := newReceiver(t, []string{testSecretA}, status(http.StatusOK))
	logs := &testkit.Output{}
	counter := &claimCounter{}
	var rs []*running
	for _, owner := range []string{"a", "b"} {
		d := replica(t, db, owner, time.Second, rcv.URL(), logs)
		d.Observer = counter
		rs = append(rs, run(t, d, logs))
	}
	const events = 60
	ids := map[string]bool{}
	for range events {
		e := record(t, db, driftEvent(), "webhook:ops")
		ids[e.ID] = true
		for _, r := range rs {
			r.Wake()
		}
	}
	rs[0].eventually(t, "every delivery delivered", func() bool {
		var n int
		if err := db.View(func(tx *store.Tx) error {
			all, err := tx.ListDeliveries(store.DeliveryDelivered, 0)
			n = len(all)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return n == events
	})

	sent := map[string]int{}
	for _, g := range rcv.deliveries() {
		if !ids[g.ID] {
			t.Errorf("receiver got unknown webhook-id %q", g.ID)
		}
		sent[g.ID]++
	}
	duplicates := 0
	for id := range ids {
		switch n := sent[id]; {
		case n == 0:
			t.Errorf("event %s never reached the receiver", id)
		case n > 1:
			duplicates += n - 1
		}
		if d, _ := getDelivery(t, db, id, "webhook:ops"); d.Attempts != 1 || d.ClaimedBy != "" {
			t.Errorf("delivery %+v", d)
		}
	}
	claims := counter.snapshot()
	t.Logf("claims per replica %v; duplicates %d", claims, duplicates)
	if duplicates != 0 {
		t.Errorf("%d duplicate sends with no replica dying", duplicates)
	}
	if claims["a"]+claims["b"] < events || len(claims) > 2 {
		t.Errorf("claims counted %v, want at least %d by a and b", claims, events)
	}
}

// A batch starts no send in the last half of its lease, when another
// replica could take the delivery over mid-send: it stops there and
// hands the rest back, due at once and unattempted.
func TestBatchReleasesUnsentInLastHalfOfLease(t *testing.T) {
	noLeaks(t)
	db := openBackend(t)
	const lease = time.Minute
	clock := &fakeClock{t: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)}
	// The first send takes (by the dispatcher's clock) past half the lease.
	rcv := newReceiver(t, []string{testSecretA}, func(int) (int, http.Header) {
		clock.Advance(lease/2 + time.Second)
		return http.StatusOK, nil
	})
	first := record(t, db, driftEvent(), "webhook:ops")
	second := record(t, db, driftEvent(), "webhook:ops")
	d := replica(t, db, "a", lease, rcv.URL(), &testkit.Output{})
	d.Now = clock.Now
	if err := d.DeliverDue(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(rcv.deliveries()); n != 1 {
		t.Fatalf("%d sends, want 1 before the lease's last half", n)
	}
	if got, _ := getDelivery(t, db, first.ID, "webhook:ops"); got.State != store.DeliveryDelivered {
		t.Errorf("first: %+v", got)
	}
	got, _ := getDelivery(t, db, second.ID, "webhook:ops")
	if got.State != store.DeliveryPending || got.Attempts != 0 || got.ClaimedBy != "" || !got.NextAttempt.IsZero() {
		t.Errorf("second not released: %+v", got)
	}
	var due []store.Delivery
	_ = db.View(func(tx *store.Tx) error { due, _ = tx.DueDeliveries(clock.Now(), 0); return nil })
	if len(due) != 1 || due[0].ID != store.DeliveryID(second.ID, "webhook:ops") {
		t.Errorf("due after the release: %+v", due)
	}
}
