package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/store"
	"github.com/rugwatch/rugwatch/visible"
)

// Backoff defaults: 5 s, doubling, at most 1 h a step, given up after a
// day (about 30 attempts).
const (
	DefaultBackoffBase  = 5 * time.Second
	DefaultBackoffMax   = time.Hour
	DefaultGiveUpAfter  = 24 * time.Hour
	DefaultPoll         = 30 * time.Second
	minAttemptsToGiveUp = 3
	batchSize           = 1000 // deliveries claimed, and settled in one transaction, per pass
	maxLastError        = 512
	errorPause          = 5 * time.Second
)

// Claim defaults.
const (
	// DefaultLease is how long a claim keeps a delivery from the other
	// replicas. It is four times WebhookTimeout: a batch starts no send
	// in the last half of its lease, so one bounded send ends before the
	// lease does, and a replica that dies delays its claimed deliveries
	// by at most this much.
	DefaultLease = 4 * WebhookTimeout
	// DefaultOwner names the claims of a dispatcher given no Owner: a
	// process alone on its store, such as a one-shot command.
	DefaultOwner = "local"
)

// Backoff schedules retries: step n waits Base·2^(n-1) capped at Max, with
// equal jitter (the second half of the step is random), and a delivery
// still failing GiveUpAfter after it was queued is dead. Zero fields take
// the defaults.
type Backoff struct {
	Base, Max, GiveUpAfter time.Duration
}

func (b Backoff) withDefaults() Backoff {
	if b.Base <= 0 {
		b.Base = DefaultBackoffBase
	}
	if b.Max <= 0 {
		b.Max = DefaultBackoffMax
	}
	if b.Max < b.Base {
		b.Max = b.Base
	}
	if b.GiveUpAfter <= 0 {
		b.GiveUpAfter = DefaultGiveUpAfter
	}
	return b
}

// Delay is how long to wait after the attempts-th failed attempt.
func (b Backoff) Delay(attempts int) time.Duration {
	b = b.withDefaults()
	d := b.Base
	for i := 1; i < attempts && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	half := d / 2
	return d - half + rand.N(half+1)
}

// Dispatcher delivers the outbox. Set the fields, then Run it once.
type Dispatcher struct {
	DB       *store.DB
	Channels map[string]Notifier
	Log      *slog.Logger
	Backoff  Backoff
	Now      func() time.Time // nil means time.Now
	Poll     time.Duration    // longest sleep between checks; 0 means DefaultPoll
	// Observer, if set, sees the outcome of every attempt (metrics), and
	// the claims of every pass if it is also a ClaimObserver.
	Observer DeliveryObserver
	// Owner names this dispatcher's claims on the outbox: the replica's
	// name when several share one store; "" means DefaultOwner. Claims,
	// not names, keep two dispatchers from sending a delivery at once, so
	// two owners of one name are safe, only harder to tell apart.
	Owner string
	// Lease is how long a claim lasts; 0 means DefaultLease. A claim a
	// dispatcher leaves (it died, or stopped mid-send) runs out after
	// Lease, and then any dispatcher sends the delivery again.
	Lease time.Duration

	wakeOnce sync.Once
	wake     chan struct{}
}

// DeliveryObserver sees each attempt's outcome, after it is recorded:
// "delivered", "retry", "dead" or "disabled" (a 410 Gone). It must not
// block.
type DeliveryObserver interface {
	Attempted(channel, outcome string)
}

// ClaimObserver is the optional side of a DeliveryObserver that counts
// claims: n deliveries claimed by owner in one pass, told after the claim
// committed. It must not block.
type ClaimObserver interface {
	Claimed(owner string, n int)
}

func (d *Dispatcher) owner() string {
	if d.Owner == "" {
		return DefaultOwner
	}
	return d.Owner
}

func (d *Dispatcher) lease() time.Duration {
	if d.Lease <= 0 {
		return DefaultLease
	}
	return d.Lease
}

func (d *Dispatcher) wakeCh() chan struct{} {
	d.wakeOnce.Do(func() { d.wake = make(chan struct{}, 1) })
	return d.wake
}

// Wake makes Run look for due deliveries at once; call it after recording
// events. It never blocks.
func (d *Dispatcher) Wake() {
	select {
	case d.wakeCh() <- struct{}{}:
	default:
	}
}

// Disabled reports whether channel was disabled by a 410 Gone. The state
// lives in the store (outbox/disabled), so it holds across reloads and
// restarts until `rugwatch alerts enable CHANNEL`; a store that cannot be
// read counts as disabled, the side that posts nothing.
func (d *Dispatcher) Disabled(channel string) bool {
	var off bool
	err := d.DB.View(func(tx *store.Tx) error {
		var err error
		_, off, err = tx.ChannelDisabled(channel)
		return err
	})
	return off || err != nil
}

func (d *Dispatcher) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

// Run delivers until ctx is done, then returns nil once every send it
// started has returned. On start it picks up everything already due,
// including deliveries left pending by an earlier run.
func (d *Dispatcher) Run(ctx context.Context) error {
	if d.DB == nil || d.Log == nil {
		return errors.New("dispatcher: DB and Log are required")
	}
	poll := d.Poll
	if poll <= 0 {
		poll = DefaultPoll
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		failed := false
		if err := d.DeliverDue(ctx); err != nil && ctx.Err() == nil {
			d.Log.Error("deliver alerts", slog.Any("err", err))
			failed = true
		}
		if ctx.Err() != nil {
			return nil
		}
		wait := poll
		var next time.Time
		var ok bool
		err := d.DB.View(func(tx *store.Tx) error {
			var err error
			next, ok, err = tx.NextDue()
			return err
		})
		if err != nil {
			d.Log.Error("read next due alert", slog.Any("err", err))
			failed = true
		} else if ok {
			wait = min(max(next.Sub(d.now()), 0), poll)
		}
		if failed {
			// A store that cannot record outcomes leaves deliveries due;
			// pause instead of spinning on them.
			wait = max(wait, min(errorPause, poll))
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return nil
		case <-d.wakeCh():
		case <-timer.C:
		}
	}
}

// DeliverDue makes one pass over the deliveries due now (at most
// batchSize): it claims them, so no other dispatcher on the store sends
// them meanwhile, then sends channels in parallel, each channel's
// deliveries in order. Run calls it in a loop; a one-shot command (check)
// calls it once after recording, leaving whatever must be retried pending
// for the daemon.
func (d *Dispatcher) DeliverDue(ctx context.Context) error {
	due, err := d.claim()
	if err != nil {
		return err
	}
	byChannel := map[string][]store.Delivery{}
	for _, dl := range due {
		byChannel[dl.Channel] = append(byChannel[dl.Channel], dl)
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, list := range byChannel {
		wg.Go(func() {
			if err := d.deliverBatch(ctx, list); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// claim claims the deliveries due now for this dispatcher. A read
// transaction looks first, so that a pass with nothing due writes
// nothing: on bbolt every write transaction is an fsync, on PostgreSQL
// a turn at the cluster-wide writer lock.
func (d *Dispatcher) claim() ([]store.Delivery, error) {
	now := d.now()
	var first []store.Delivery
	if err := d.DB.View(func(tx *store.Tx) error {
		var err error
		first, err = tx.DueDeliveries(now, 1)
		return err
	}); err != nil {
		return nil, fmt.Errorf("read due deliveries: %w", err)
	}
	if len(first) == 0 {
		return nil, nil
	}
	owner := d.owner()
	var due []store.Delivery
	if err := d.DB.Update(func(tx *store.Tx) error {
		var err error
		due, err = tx.ClaimDue(now, batchSize, owner, d.lease())
		return err
	}); err != nil {
		return nil, fmt.Errorf("claim due deliveries: %w", err)
	}
	if co, ok := d.Observer.(ClaimObserver); ok && len(due) > 0 {
		co.Claimed(owner, len(due))
	}
	return due, nil
}

// outcome is what one attempt decided.
type outcome struct {
	state   string
	lastErr string
	retryIn time.Duration
	report  rugwatch.EventType // EventAlertDead or EventAlertDisabled, or ""
	disable bool
}

// attempted is one delivery's attempt, waiting to be recorded.
type attempted struct {
	dl store.Delivery
	ev rugwatch.Event
	o  outcome
}

// deliverBatch sends one channel's claimed deliveries in order and
// records their outcomes in one write transaction: a transaction (and an
// fsync) per delivery held the log channel to about 1,400 a second. Each
// outcome is still recorded only after its send returned, so a crash
// before the commit leaves the batch claimed until the lease runs out,
// then sent again, deduplicated by event id as any retry (at least
// once). No send starts in the last half of the lease, when another
// replica could take the delivery over before it ends; the batch stops
// there and releases what it did not send. Everything read for the batch
// (the channel's disabled state, the events) comes from one read
// transaction.
// releaseEvery is how many events a batch reads between releases of the
// store's mapped pages.
const releaseEvery = 64

func (d *Dispatcher) deliverBatch(ctx context.Context, list []store.Delivery) error {
	if len(list) == 0 {
		return nil
	}
	channel := list[0].Channel
	n, ok := d.Channels[channel]
	disabled := d.Disabled(channel)
	events := make([]rugwatch.Event, len(list))
	found := make([]bool, len(list))
	if ok && !disabled {
		if err := d.DB.View(func(tx *store.Tx) error {
			for i, dl := range list {
				var err error
				if events[i], found[i], err = tx.Event(dl.EventSeq); err != nil {
					return fmt.Errorf("load event %d for %s: %w", dl.EventSeq, dl.ID, err)
				}
				// A first sight's events lie among its many records:
				// read one by one, a batch's would map hundreds of MiB
				// of the file (store.Tx.ReleaseMapped). Only memory
				// accounting is at stake, so a failure is no reason
				// to stop.
				if i%releaseEvery == releaseEvery-1 {
					_ = tx.ReleaseMapped()
				}
			}
			return nil
		}); err != nil {
			return err
		}
	}
	sendBy := list[0].ClaimedUntil.Add(-d.lease() / 2)
	done := make([]attempted, 0, len(list))
	for i, dl := range list {
		if ctx.Err() != nil || d.now().After(sendBy) {
			return d.recordAll(done, list[i:])
		}
		var o outcome
		ev := events[i]
		switch {
		case !ok:
			o = outcome{state: store.DeliveryDead, lastErr: "no channel " + dl.Channel + " in the config"}
		case disabled:
			o = outcome{state: store.DeliveryDead, lastErr: "channel disabled after HTTP 410 Gone; `rugwatch alerts enable " + dl.Channel + "` sends to it again"}
		case !found[i] || ev.ID != dl.EventID:
			o = outcome{state: store.DeliveryDead, lastErr: fmt.Sprintf("event %d (%s) not in the log", dl.EventSeq, dl.EventID)}
		default:
			// The send happens outside any transaction: a slow receiver
			// must not hold the store's one writer.
			retry, err := n.Notify(ctx, ev)
			if err != nil && ctx.Err() != nil {
				// Interrupted by shutdown: it may have reached the
				// receiver, so record nothing; its claim runs out and
				// whoever finds it due then sends it again. The rest
				// were never sent: release them at once.
				return d.recordAll(done, list[i+1:])
			}
			o = d.judge(dl, retry, err)
			// A 410 disables the channel for the rest of the batch too,
			// as the store will say once it is recorded.
			disabled = disabled || o.disable
		}
		done = append(done, attempted{dl: dl, ev: ev, o: o})
	}
	return d.recordAll(done, nil)
}

// judge turns a send's result into the delivery's next state.
func (d *Dispatcher) judge(dl store.Delivery, retry bool, err error) outcome {
	if err == nil {
		return outcome{state: store.DeliveryDelivered}
	}
	msg := visible.Bounded(err.Error(), maxLastError)
	if errors.Is(err, ErrGone) {
		return outcome{state: store.DeliveryDead, lastErr: msg, report: rugwatch.EventAlertDisabled, disable: true}
	}
	if !retry {
		return outcome{state: store.DeliveryDead, lastErr: msg, report: rugwatch.EventAlertDead}
	}
	b := d.Backoff.withDefaults()
	wait := b.Delay(dl.Attempts + 1)
	var ra *RetryAfterError
	if errors.As(err, &ra) {
		wait = max(wait, ra.After)
	}
	now := d.now()
	if dl.Attempts+1 >= minAttemptsToGiveUp && now.Add(wait).Sub(dl.CreatedAt) > b.GiveUpAfter {
		return outcome{state: store.DeliveryDead, lastErr: msg + fmt.Sprintf(" (gave up after %d attempts)", dl.Attempts+1), report: rugwatch.EventAlertDead}
	}
	return outcome{state: store.DeliveryPending, lastErr: msg, retryIn: wait}
}

// recordAll stores the outcomes of a batch in one transaction, and for a
// dead or disabled channel appends the report event and queues it to
// every other channel, in the same transaction. It releases the claims
// of unsent, in the same transaction too.
func (d *Dispatcher) recordAll(done []attempted, unsent []store.Delivery) error {
	if len(done) == 0 && len(unsent) == 0 {
		return nil
	}
	now := d.now().UTC()
	reported := false
	err := d.DB.Update(func(tx *store.Tx) error {
		reported = false
		for _, a := range done {
			r, err := d.recordTx(tx, a.dl, a.ev, a.o, now)
			if err != nil {
				return fmt.Errorf("record delivery %s: %w", a.dl.ID, err)
			}
			reported = reported || r
		}
		for _, dl := range unsent {
			if err := release(tx, dl); err != nil {
				return fmt.Errorf("release delivery %s: %w", dl.ID, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, a := range done {
		d.logOutcome(a.dl, a.o)
	}
	if len(unsent) > 0 {
		d.Log.LogAttrs(context.Background(), slog.LevelDebug, "alert claims released unsent",
			slog.String("channel", unsent[0].Channel), slog.Int("deliveries", len(unsent)))
	}
	if reported || len(unsent) > 0 {
		d.Wake()
	}
	return nil
}

// release hands back a claimed delivery that was never sent: due at once
// (the zero time; it was due when claimed), for anyone. A claim that is
// no longer dl's (it ran out and another dispatcher took it) is left.
func release(tx *store.Tx, dl store.Delivery) error {
	_, err := tx.ModifyDelivery(dl.ID, func(cur *store.Delivery) bool {
		if cur.State != store.DeliveryPending || !sameClaim(*cur, dl) {
			return false
		}
		cur.NextAttempt, cur.ClaimedBy, cur.ClaimedUntil = time.Time{}, "", time.Time{}
		return true
	})
	return err
}

// sameClaim reports whether cur still carries the claim dl was given.
// Owner names may repeat (every one-shot command is DefaultOwner); the
// end of the lease, to the nanosecond, tells two claims apart.
func sameClaim(cur, dl store.Delivery) bool {
	return cur.ClaimedBy == dl.ClaimedBy && cur.ClaimedUntil.Equal(dl.ClaimedUntil)
}

// recordTx stores one outcome in tx, ending the claim; true when it
// queued a report. It records even when the claim ran out and another
// dispatcher took the delivery over: the send happened. But a delivery
// already settled (the other one delivered it) stays as it is, and a
// retry leaves a live claim of another's in place, for its owner to
// record its own send.
func (d *Dispatcher) recordTx(tx *store.Tx, dl store.Delivery, ev rugwatch.Event, o outcome, now time.Time) (bool, error) {
	var (
		cur     store.Delivery
		settled bool
	)
	_, err := tx.ModifyDelivery(dl.ID, func(d *store.Delivery) bool {
		if d.State != store.DeliveryPending {
			return false // someone else settled it meanwhile
		}
		takenOver := !sameClaim(*d, dl) && d.ClaimedUntil.After(now)
		d.Attempts++
		d.State = o.state
		d.LastError = o.lastErr
		switch {
		case o.state != store.DeliveryPending:
			if o.state == store.DeliveryDelivered {
				d.DeliveredAt = now
			}
			// The store drops the claim of a settled delivery; its
			// lease's end is no attempt to show either.
			if d.NextAttempt.After(now) {
				d.NextAttempt = now
			}
		case !takenOver:
			d.NextAttempt = now.Add(o.retryIn)
			d.ClaimedBy, d.ClaimedUntil = "", time.Time{}
		}
		cur, settled = *d, true
		return true
	})
	if err != nil || !settled {
		return false, err
	}
	if o.disable {
		// In the transaction that records the 410, so no restart can
		// keep the dead delivery and forget why.
		if err := tx.DisableChannel(store.DisabledChannel{Channel: dl.Channel, DisabledAt: now, Reason: o.lastErr, EventID: dl.EventID}); err != nil {
			return false, err
		}
	}
	// Reports about reports are not raised: two broken channels would
	// otherwise bounce alert.dead events between them forever.
	if o.report == "" || ev.Type == rugwatch.EventAlertDead || ev.Type == rugwatch.EventAlertDisabled || ev.ID == "" {
		return false, nil
	}
	r := d.reportEvent(o.report, dl, cur, ev, now)
	if err := tx.AppendEvent(&r); err != nil {
		return false, err
	}
	others, err := d.others(tx, dl.Channel)
	if err != nil {
		return false, err
	}
	if err := Enqueue(tx, r, others); err != nil {
		return false, err
	}
	return true, nil
}

// logOutcome tells the observer and the log of one recorded outcome.
func (d *Dispatcher) logOutcome(dl store.Delivery, o outcome) {
	if d.Observer != nil {
		d.Observer.Attempted(dl.Channel, o.metric())
	}
	attrs := []slog.Attr{slog.String("delivery", dl.ID), slog.String("channel", dl.Channel),
		slog.String("state", o.state), slog.Int("attempts", dl.Attempts+1)}
	switch o.state {
	case store.DeliveryDelivered:
		d.Log.LogAttrs(context.Background(), slog.LevelDebug, "alert delivered", attrs...)
	case store.DeliveryPending:
		attrs = append(attrs, slog.String("err", o.lastErr), slog.Duration("retry_in", o.retryIn))
		d.Log.LogAttrs(context.Background(), slog.LevelWarn, "alert delivery failed, will retry", attrs...)
	default:
		attrs = append(attrs, slog.String("err", o.lastErr))
		if o.disable {
			attrs = append(attrs, slog.Bool("channel_disabled", true))
		}
		d.Log.LogAttrs(context.Background(), slog.LevelError, "alert delivery gave up", attrs...)
	}
}

func (d *Dispatcher) reportEvent(typ rugwatch.EventType, dl, cur store.Delivery, ev rugwatch.Event, now time.Time) rugwatch.Event {
	var what string
	if typ == rugwatch.EventAlertDisabled {
		what = fmt.Sprintf("alert channel %s answered 410 Gone and is disabled until `rugwatch alerts enable %s`; "+
			"event %s (%s) was not delivered to it: %s", dl.Channel, dl.Channel, ev.ID, ev.Type, cur.LastError)
	} else {
		what = fmt.Sprintf("alert channel %s gave up on event %s (%s) after %d attempt(s): %s",
			dl.Channel, ev.ID, ev.Type, cur.Attempts, cur.LastError)
	}
	return rugwatch.Event{
		Type:       typ,
		Severity:   rugwatch.SeverityWarning,
		Server:     ev.Server,
		Tool:       ev.Tool,
		Message:    what,
		OccurredAt: now,
	}
}

// others lists every configured channel but skip that is not disabled,
// sorted for a stable order; it reads the disabled ones in tx, the
// transaction that will queue to them.
func (d *Dispatcher) others(tx *store.Tx, skip string) ([]string, error) {
	var out []string
	for name := range d.Channels {
		if name == skip {
			continue
		}
		_, off, err := tx.ChannelDisabled(name)
		if err != nil {
			return nil, err
		}
		if !off {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out, nil
}

// metric names the outcome for DeliveryObserver.
func (o outcome) metric() string {
	switch {
	case o.disable:
		return "disabled"
	case o.state == store.DeliveryPending:
		return "retry"
	}
	return o.state
}

// Enqueue queues e for channels. Call it in the transaction that appended
// e, right after tx.AppendEvent, so that the event and its deliveries
// commit together; queueing the same event for the same channel again is a
// no-op.
func Enqueue(tx *store.Tx, e rugwatch.Event, channels []string) error {
	if e.ID == "" || e.Seq == 0 {
		return errors.New("enqueue alert: event has no id or seq (append it first)")
	}
	for _, ch := range channels {
		if err := tx.EnqueueDelivery(store.Delivery{
			ID:       store.DeliveryID(e.ID, ch),
			EventID:  e.ID,
			EventSeq: e.Seq,
			Channel:  ch,
			State:    store.DeliveryPending,
		}); err != nil {
			return fmt.Errorf("enqueue alert %s for %s: %w", e.ID, ch, err)
		}
	}
	return nil
}
