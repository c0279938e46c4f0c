package notify

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/configs"
	"github.com/rugwatch/rugwatch/store"
	"github.com/rugwatch/rugwatch/testkit"
)

// tiny makes retries immediate enough for tests without changing their
// shape.
var tiny = Backoff{Base: time.Millisecond, Max: 2 * time.Millisecond, GiveUpAfter: time.Hour}

// noLeaks checks, after every other cleanup of the test, that no goroutine
// outlived it. Register it first.
func noLeaks(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	t.Cleanup(defaultWebhookClient.CloseIdleConnections)
}

func openStore(t *testing.T) *store.DB {
	t.Helper()
	return openBackend(t)
}

// record appends e and queues it for channels in one transaction, the way
// the monitor does.
func record(t *testing.T, db *store.DB, e rugwatch.Event, channels ...string) rugwatch.Event {
	t.Helper()
	e.ID, e.Seq = "", 0
	if err := db.Update(func(tx *store.Tx) error {
		if err := tx.AppendEvent(&e); err != nil {
			return err
		}
		return Enqueue(tx, e, channels)
	}); err != nil {
		t.Fatal(err)
	}
	return e
}

func getDelivery(t *testing.T, db *store.DB, eventID, channel string) (store.Delivery, bool) {
	t.Helper()
	var d store.Delivery
	var ok bool
	if err := db.View(func(tx *store.Tx) error {
		var err error
		d, ok, err = tx.Delivery(store.DeliveryID(eventID, channel))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return d, ok
}

func stateIs(t *testing.T, db *store.DB, eventID, channel, state string) func() bool {
	return func() bool {
		d, ok := getDelivery(t, db, eventID, channel)
		return ok && d.State == state
	}
}

func eventsOfType(t *testing.T, db *store.DB, typ rugwatch.EventType) []rugwatch.Event {
	t.Helper()
	var out []rugwatch.Event
	if err := db.View(func(tx *store.Tx) error {
		all, err := tx.Events("", 0)
		for _, e := range all {
			if e.Type == typ {
				out = append(out, e)
			}
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// running is a Dispatcher started in the background, stopped and waited
// for at cleanup.
type running struct {
	*Dispatcher
	logs *testkit.Output
	stop func() error
}

func startDispatcher(t *testing.T, db *store.DB, b Backoff, now func() time.Time, ns ...Notifier) *running {
	t.Helper()
	logs := &testkit.Output{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	all := append([]Notifier{&Log{Logger: logger}}, ns...)
	d := &Dispatcher{DB: db, Channels: ByName(all), Log: logger, Backoff: b, Now: now}
	return run(t, d, logs)
}

// run starts d in the background.
func run(t *testing.T, d *Dispatcher, logs *testkit.Output) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			runErr = <-done
		})
		return runErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return &running{Dispatcher: d, logs: logs, stop: stop}
}

func webhook(t *testing.T, name, url string) *Webhook {
	return &Webhook{Config: configs.Webhook{Name: name, URL: url, Secret: secret(t, testSecretA)}}
}

func TestDispatcherRetriesUntilDelivered(t *testing.T) {
	noLeaks(t)
	db := openStore(t)
	rcv := newReceiver(t, []string{testSecretA}, func(n int) (int, http.Header) {
		if n < 3 {
			return http.StatusServiceUnavailable, nil
		}
		return http.StatusOK, nil
	})
	// Queued before the dispatcher starts: it must pick it up on start.
	e := record(t, db, driftEvent(), "log", "webhook:ops")
	r := startDispatcher(t, db, tiny, nil, webhook(t, "ops", rcv.URL()))

	r.eventually(t, "webhook delivery", stateIs(t, db, e.ID, "webhook:ops", store.DeliveryDelivered))
	r.eventually(t, "log delivery", stateIs(t, db, e.ID, "log", store.DeliveryDelivered))

	got := rcv.deliveries()
	if len(got) != 4 {
		t.Fatalf("%d requests, want 3 failures and 1 success", len(got))
	}
	for i, g := range got {
		if g.ID != e.ID {
			t.Errorf("attempt %d: webhook-id %q, want %q on every attempt", i, g.ID, e.ID)
		}
		if g.ValidSigs != 1 {
			t.Errorf("attempt %d: signature did not verify", i)
		}
		if string(g.Body) != string(got[0].Body) {
			t.Errorf("attempt %d: body differs from the first", i)
		}
	}
	d, _ := getDelivery(t, db, e.ID, "webhook:ops")
	if d.Attempts != 4 || d.DeliveredAt.IsZero() || d.LastError != "" {
		t.Errorf("delivery %+v", d)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	logs := r.logs.String()
	if !strings.Contains(logs, `"msg":"alert"`) || !strings.Contains(logs, e.ID) {
		t.Errorf("log channel did not log the event:\n%s", logs)
	}
	if !strings.Contains(logs, "will retry") {
		t.Errorf("retries not logged:\n%s", logs)
	}
}

func TestDispatcherPermanentFailureReportsDead(t *testing.T) {
	noLeaks(t)
	db := openStore(t)
	bad := newReceiver(t, []string{testSecretA}, status(http.StatusBadRequest))
	good := newReceiver(t, []string{testSecretA}, status(http.StatusOK))
	e := record(t, db, driftEvent(), "webhook:bad")
	r := startDispatcher(t, db, tiny, nil, webhook(t, "bad", bad.URL()), webhook(t, "good", good.URL()))

	r.eventually(t, "dead delivery", stateIs(t, db, e.ID, "webhook:bad", store.DeliveryDead))
	r.eventually(t, "report to the other webhook", func() bool { return len(good.deliveries()) == 1 })

	d, _ := getDelivery(t, db, e.ID, "webhook:bad")
	if d.Attempts != 1 || !strings.Contains(d.LastError, "HTTP 400") {
		t.Errorf("dead delivery %+v", d)
	}
	if n := len(bad.deliveries()); n != 1 {
		t.Errorf("a 400 was retried: %d requests", n)
	}
	dead := eventsOfType(t, db, rugwatch.EventAlertDead)
	if len(dead) != 1 {
		t.Fatalf("%d alert.dead events", len(dead))
	}
	if dead[0].Severity != rugwatch.SeverityWarning || !strings.Contains(dead[0].Message, "webhook:bad") ||
		!strings.Contains(dead[0].Message, e.ID) || dead[0].Server != e.Server {
		t.Errorf("alert.dead event %+v", dead[0])
	}
	var p struct {
		ID   string `json:"id"`
		Type string `json:"type"`
	}
	if err := json.Unmarshal(good.deliveries()[0].Body, &p); err != nil || p.Type != string(rugwatch.EventAlertDead) || p.ID != dead[0].ID {
		t.Errorf("other channel got %+v (%v)", p, err)
	}
	r.eventually(t, "report to the log", stateIs(t, db, dead[0].ID, "log", store.DeliveryDelivered))
	if _, ok := getDelivery(t, db, dead[0].ID, "webhook:bad"); ok {
		t.Error("the report was queued to the channel that failed")
	}
}

func TestDispatcherGoneDisablesChannel(t *testing.T) {
	noLeaks(t)
	db := openStore(t)
	gone := newReceiver(t, []string{testSecretA}, status(http.StatusGone))
	good := newReceiver(t, []string{testSecretA}, status(http.StatusOK))
	e1 := record(t, db, driftEvent(), "webhook:gone")
	e2 := record(t, db, driftEvent(), "webhook:gone")
	r := startDispatcher(t, db, tiny, nil, webhook(t, "gone", gone.URL()), webhook(t, "good", good.URL()))

	r.eventually(t, "first dead", stateIs(t, db, e1.ID, "webhook:gone", store.DeliveryDead))
	r.eventually(t, "second dead", stateIs(t, db, e2.ID, "webhook:gone", store.DeliveryDead))
	r.eventually(t, "report", func() bool { return len(good.deliveries()) == 1 })

	if n := len(gone.deliveries()); n != 1 {
		t.Errorf("disabled endpoint got %d requests, want 1", n)
	}
	if !r.Disabled("webhook:gone") || r.Disabled("webhook:good") {
		t.Error("disabled set wrong")
	}
	d2, _ := getDelivery(t, db, e2.ID, "webhook:gone")
	if !strings.Contains(d2.LastError, "disabled") {
		t.Errorf("second delivery: %+v", d2)
	}
	reports := eventsOfType(t, db, rugwatch.EventAlertDisabled)
	if len(reports) != 1 || !strings.Contains(reports[0].Message, "410") {
		t.Fatalf("alert.disabled events: %+v", reports)
	}
	if len(eventsOfType(t, db, rugwatch.EventAlertDead)) != 0 {
		t.Error("disabled channel also raised alert.dead")
	}
	var p struct{ Type string }
	_ = json.Unmarshal(good.deliveries()[0].Body, &p)
	if p.Type != string(rugwatch.EventAlertDisabled) {
		t.Errorf("other channel got %q", p.Type)
	}
}

// fakeClock is a clock the test moves by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestDispatcherHonoursRetryAfter(t *testing.T) {
	noLeaks(t)
	db := openStore(t)
	clock := &fakeClock{t: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)}
	rcv := newReceiver(t, []string{testSecretA}, func(n int) (int, http.Header) {
		if n == 0 {
			return http.StatusTooManyRequests, http.Header{"Retry-After": {"90"}}
		}
		return http.StatusOK, nil
	})
	e := record(t, db, driftEvent(), "webhook:ops")
	wh := webhook(t, "ops", rcv.URL())
	wh.Now = clock.Now
	r := startDispatcher(t, db, tiny, clock.Now, wh)

	r.eventually(t, "first attempt recorded", func() bool {
		d, _ := getDelivery(t, db, e.ID, "webhook:ops")
		return d.Attempts == 1
	})
	d, _ := getDelivery(t, db, e.ID, "webhook:ops")
	if want := clock.Now().Add(90 * time.Second); d.State != store.DeliveryPending || !d.NextAttempt.Equal(want) {
		t.Fatalf("after 429 Retry-After 90: state %s next %v, want pending at %v", d.State, d.NextAttempt, want)
	}
	if !strings.Contains(d.LastError, "HTTP 429") {
		t.Errorf("LastError %q", d.LastError)
	}
	// Not due a second early.
	clock.Advance(89 * time.Second)
	var due []store.Delivery
	_ = db.View(func(tx *store.Tx) error { due, _ = tx.DueDeliveries(clock.Now(), 0); return nil })
	if len(due) != 0 {
		t.Errorf("due before Retry-After passed: %+v", due)
	}
	clock.Advance(time.Second)
	r.Wake()
	r.eventually(t, "delivery after Retry-After", stateIs(t, db, e.ID, "webhook:ops", store.DeliveryDelivered))
	if n := len(rcv.deliveries()); n != 2 {
		t.Errorf("%d requests, want 2", n)
	}
}

func TestDispatcherGivesUpAfterSpan(t *testing.T) {
	noLeaks(t)
	db := openStore(t)
	rcv := newReceiver(t, []string{testSecretA}, status(http.StatusBadGateway))
	e := record(t, db, driftEvent(), "webhook:ops")
	r := startDispatcher(t, db, Backoff{Base: time.Millisecond, Max: 2 * time.Millisecond, GiveUpAfter: 30 * time.Millisecond}, nil,
		webhook(t, "ops", rcv.URL()))
	r.eventually(t, "given up", stateIs(t, db, e.ID, "webhook:ops", store.DeliveryDead))
	d, _ := getDelivery(t, db, e.ID, "webhook:ops")
	if d.Attempts < minAttemptsToGiveUp || !strings.Contains(d.LastError, "gave up after") {
		t.Errorf("delivery %+v", d)
	}
	if len(rcv.deliveries()) != d.Attempts {
		t.Errorf("%d requests for %d attempts", len(rcv.deliveries()), d.Attempts)
	}
	dead := eventsOfType(t, db, rugwatch.EventAlertDead)
	if len(dead) != 1 {
		t.Fatalf("%d alert.dead events", len(dead))
	}
	r.eventually(t, "report logged", stateIs(t, db, dead[0].ID, "log", store.DeliveryDelivered))
}

func TestDispatcherEmailRetryThenDeliveredAndDead(t *testing.T) {
	noLeaks(t)
	db := openStore(t)
	flaky := startSMTP(t, smtpPlain, "", "", func(n int) error {
		if n == 0 {
			return smtpReply(451, "greylisted, try again")
		}
		return nil
	})
	refusing := startSMTP(t, smtpPlain, "", "", func(int) error { return smtpReply(550, "no such mailbox") })
	cfgB := refusing.emailConfig(configs.TLSNone)
	cfgB.Name = "refusing"
	e := record(t, db, driftEvent(), "email:security", "email:refusing")
	r := startDispatcher(t, db, tiny, nil,
		&Email{Config: flaky.emailConfig(configs.TLSNone)},
		&Email{Config: cfgB})

	r.eventually(t, "greylisted mail delivered", stateIs(t, db, e.ID, "email:security", store.DeliveryDelivered))
	r.eventually(t, "refused mail dead", stateIs(t, db, e.ID, "email:refusing", store.DeliveryDead))
	d, _ := getDelivery(t, db, e.ID, "email:security")
	if d.Attempts != 2 {
		t.Errorf("greylisted: %d attempts, want 2", d.Attempts)
	}
	dead, _ := getDelivery(t, db, e.ID, "email:refusing")
	if dead.Attempts != 1 || !strings.Contains(dead.LastError, "550") {
		t.Errorf("refused: %+v", dead)
	}
	// Accepted once, with the Message-ID derived from the event (the report
	// of the refused mail may arrive here too; it has its own).
	var mine int
	for _, msg := range flaky.messages() {
		m, _ := parseMail(t, msg.Data)
		if m.Header.Get("Message-Id") == "<"+e.ID+"@rugwatch>" {
			mine++
		}
	}
	if mine != 1 {
		t.Errorf("event mailed %d times, want 1", mine)
	}
	// The report of the refused mail reaches the flaky-but-working one.
	reports := eventsOfType(t, db, rugwatch.EventAlertDead)
	if len(reports) != 1 {
		t.Fatalf("%d alert.dead", len(reports))
	}
	r.eventually(t, "report mailed", stateIs(t, db, reports[0].ID, "email:security", store.DeliveryDelivered))
}

// Shutdown in the middle of a send: Run returns, and the delivery stays
// pending and unattempted for the next run.
func TestDispatcherStopsDuringHungSend(t *testing.T) {
	noLeaks(t)
	db := openStore(t)
	entered, release := make(chan struct{}), make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		close(entered)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	e := record(t, db, driftEvent(), "webhook:slow")
	r := startDispatcher(t, db, tiny, nil, webhook(t, "slow", srv.URL))
	<-entered
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	d, _ := getDelivery(t, db, e.ID, "webhook:slow")
	if d.State != store.DeliveryPending || d.Attempts != 0 {
		t.Errorf("after shutdown mid-send: %+v", d)
	}
}

func TestDispatcherWake(t *testing.T) {
	noLeaks(t)
	db := openStore(t)
	rcv := newReceiver(t, []string{testSecretA}, status(http.StatusOK))
	logs := &testkit.Output{}
	// With an hour between polls, only Wake can deliver an event recorded
	// after the first look at the outbox. Debug level, so that the
	// delivery's log line wakes r.eventually.
	r := run(t, &Dispatcher{DB: db, Channels: ByName([]Notifier{webhook(t, "ops", rcv.URL())}),
		Log: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), Backoff: tiny, Poll: time.Hour}, logs)
	e := record(t, db, driftEvent(), "webhook:ops")
	r.Wake()
	r.eventually(t, "delivery after Wake", stateIs(t, db, e.ID, "webhook:ops", store.DeliveryDelivered))
}

func TestDispatcherUnknownChannelIsDead(t *testing.T) {
	noLeaks(t)
	db := openStore(t)
	e := record(t, db, driftEvent(), "webhook:removed")
	r := startDispatcher(t, db, tiny, nil)
	r.eventually(t, "dead", stateIs(t, db, e.ID, "webhook:removed", store.DeliveryDead))
	d, _ := getDelivery(t, db, e.ID, "webhook:removed")
	if !strings.Contains(d.LastError, "no channel") {
		t.Errorf("%+v", d)
	}
}

func TestEnqueueNeedsAppendedEvent(t *testing.T) {
	db := openStore(t)
	err := db.Update(func(tx *store.Tx) error { return Enqueue(tx, driftEvent(), []string{"log"}) })
	if err != nil {
		t.Fatalf("appended-looking event refused: %v", err)
	}
	err = db.Update(func(tx *store.Tx) error { return Enqueue(tx, rugwatch.Event{Type: "tool.new"}, []string{"log"}) })
	if err == nil {
		t.Error("event without id/seq queued")
	}
}

func TestBackoffDelays(t *testing.T) {
	b := Backoff{}
	for attempt, bounds := range map[int][2]time.Duration{
		1: {2500 * time.Millisecond, 5 * time.Second}, 2: {5 * time.Second, 10 * time.Second},
		3: {10 * time.Second, 20 * time.Second}, 12: {30 * time.Minute, time.Hour}, 40: {30 * time.Minute, time.Hour},
	} {
		for range 50 {
			if d := b.Delay(attempt); d < bounds[0] || d > bounds[1] {
				t.Fatalf("Delay(%d) = %v, want within %v", attempt, d, bounds)
			}
		}
	}
	// The default schedule keeps trying for at least a day before giving up.
	var span time.Duration
	n := 0
	for ; span <= DefaultGiveUpAfter; n++ {
		span += b.Delay(n + 1)
	}
	if n < 20 {
		t.Errorf("only %d attempts in the first day", n)
	}
}

// One pass without Run, as `rugwatch check` does: delivered where the
// receiver took it, pending where it must be retried later.
func TestDeliverDueOnePass(t *testing.T) {
	noLeaks(t)
	db := openStore(t)
	ok := newReceiver(t, []string{testSecretA}, status(200))
	busy := newReceiver(t, []string{testSecretA}, status(503))
	e := record(t, db, driftEvent(), "log", "webhook:ok", "webhook:busy")
	d := &Dispatcher{DB: db, Log: slog.New(slog.DiscardHandler), Backoff: tiny,
		Channels: ByName([]Notifier{&Log{Logger: slog.New(slog.DiscardHandler)}, webhook(t, "ok", ok.URL()), webhook(t, "busy", busy.URL())})}
	if err := d.DeliverDue(context.Background()); err != nil {
		t.Fatal(err)
	}
	for ch, want := range map[string]string{"log": store.DeliveryDelivered, "webhook:ok": store.DeliveryDelivered, "webhook:busy": store.DeliveryPending} {
		if got, _ := getDelivery(t, db, e.ID, ch); got.State != want || got.Attempts != 1 {
			t.Errorf("%s: %s after %d attempts, want %s after 1", ch, got.State, got.Attempts, want)
		}
	}
}
