package notify

import (
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/store"
	"github.com/rugwatch/rugwatch/testkit"
)

// observed records what a DeliveryObserver is told.
type observed struct {
	mu  sync.Mutex
	got []string
}

func (o *observed) Attempted(channel, outcome string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.got = append(o.got, channel+"="+outcome)
}

func (o *observed) has(s string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Contains(o.got, s)
}

// A 410 disables the channel in the store: a new dispatcher over the same
// file (what a SIGHUP reload or a restart builds) posts nothing to it, and
// raises no second alert.disabled, until the channel is enabled again.
func TestGoneDisableSurvivesANewDispatcher(t *testing.T) {
	noLeaks(t)
	db := openStore(t)
	gone := newReceiver(t, []string{testSecretA}, status(http.StatusGone))
	e1 := record(t, db, driftEvent(), "webhook:gone")
	obs := &observed{}
	r := startDispatcher(t, db, tiny, nil, webhook(t, "gone", gone.URL()))
	r.eventually(t, "first dead", stateIs(t, db, e1.ID, "webhook:gone", store.DeliveryDead))
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if n := len(gone.deliveries()); n != 1 {
		t.Fatalf("gone endpoint got %d requests, want 1", n)
	}

	// The "restart": a new dispatcher, nothing carried over in memory.
	e2 := record(t, db, driftEvent(), "webhook:gone")
	r2 := startDispatcherObserved(t, db, obs, webhook(t, "gone", gone.URL()))
	r2.eventually(t, "second dead", stateIs(t, db, e2.ID, "webhook:gone", store.DeliveryDead))
	if n := len(gone.deliveries()); n != 1 {
		t.Errorf("after a restart the gone endpoint was posted to again: %d requests", n)
	}
	if n := len(eventsOfType(t, db, rugwatch.EventAlertDisabled)); n != 1 {
		t.Errorf("%d alert.disabled events, want 1 (a restart must not report it again)", n)
	}
	d2, _ := getDelivery(t, db, e2.ID, "webhook:gone")
	if !strings.Contains(d2.LastError, "alerts enable webhook:gone") {
		t.Errorf("dead delivery does not say how to enable: %q", d2.LastError)
	}
	// The observer is told after the outcome commits, before it is logged.
	r2.eventually(t, "the outcome observed", func() bool { return obs.has("webhook:gone=dead") })
	if err := r2.stop(); err != nil {
		t.Fatal(err)
	}

	// Enabled again, the next delivery is posted.
	if err := db.Update(func(tx *store.Tx) error { _, err := tx.EnableChannel("webhook:gone"); return err }); err != nil {
		t.Fatal(err)
	}
	e3 := record(t, db, driftEvent(), "webhook:gone")
	r3 := startDispatcherObserved(t, db, obs, webhook(t, "gone", gone.URL()))
	r3.eventually(t, "third attempted", stateIs(t, db, e3.ID, "webhook:gone", store.DeliveryDead))
	if n := len(gone.deliveries()); n != 2 {
		t.Errorf("after enable the endpoint got %d requests in all, want 2", n)
	}
	r3.eventually(t, "the outcome observed", func() bool { return obs.has("webhook:gone=disabled") })
}

func startDispatcherObserved(t *testing.T, db *store.DB, obs DeliveryObserver, ns ...Notifier) *running {
	t.Helper()
	logs := &testkit.Output{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	d := &Dispatcher{DB: db, Channels: ByName(append([]Notifier{&Log{Logger: logger}}, ns...)), Log: logger, Backoff: tiny, Observer: obs}
	return run(t, d, logs)
}
