package monitor

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/mcpclient"
	"github.com/rugwatch/rugwatch/report"
	"github.com/rugwatch/rugwatch/store"
	"github.com/rugwatch/rugwatch/visible"
)

// ServerSpec is one configured server as polls need it. Resolve gives its
// Target with secrets resolved afresh, for each poll and each watch
// connection; Key captures everything a poll depends on (secret references
// as written, never their values), so a reload restarts only what changed.
type ServerSpec struct {
	Name      string
	Transport string
	Schedule  string
	Timeout   time.Duration
	Watch     bool
	// RevisionCheck lists once per protocol era the server offers and
	// raises tool.cloaked where the tool sets differ.
	RevisionCheck bool
	Key           string
	Resolve       func() (mcpclient.Target, error)
}

// Poller polls servers and records what it saw: `check` uses it once, the
// Fleet from its schedules and watch sessions.
type Poller struct {
	Recorder *Recorder
	Opts     mcpclient.DialOptions
	Log      *slog.Logger
	// OnEvent sees every recorded event, after it is stored.
	OnEvent func(rugwatch.Event)
	// Observer, if set, sees every poll PollOne made (metrics).
	Observer PollObserver
	// Sightings, when set, remembers what each successful poll saw, for
	// the proxy's cloaking check.
	Sightings *Sightings
}

// PollObserver is told of each poll after it is recorded: which server
// (a config-chosen name), how long the poll took, and its result: "ok",
// "error" (the server failed it: unreachable, hostile, timed out) or
// "record_error" (the store did not take it). It must not block.
type PollObserver interface {
	Polled(server string, took time.Duration, result string)
}

// PollOne polls one server within its timeout and records the result,
// unreachable included. Only a failure to record is an error.
func (p *Poller) PollOne(ctx context.Context, s ServerSpec) error {
	t, err := p.resolve(s)()
	if err != nil {
		// A secret that cannot be resolved is this server's failure, not
		// the daemon's: record it so the operator sees it in status.
		return p.Record(s, nil, err)
	}
	start := time.Now()
	opts := p.Opts
	poll := mcpclient.Poll
	if s.RevisionCheck {
		poll = mcpclient.PollEachRevision
	} else if p.Recorder != nil && p.Recorder.DB != nil {
		opts.Unchanged = p.Recorder.unchangedFor(s.Name)
	}
	pctx, cancel := context.WithTimeout(ctx, s.Timeout)
	l, pollErr := poll(pctx, t, opts)
	cancel()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	err = p.Record(s, l, pollErr)
	if errors.Is(err, ErrListingStale) {
		// The server's state moved between listing and recording (an
		// approval, say): list it again in full. Rare, and bounded: the
		// second listing has no fast path to be stale on.
		pctx, cancel := context.WithTimeout(ctx, s.Timeout)
		first := l
		l, pollErr = poll(pctx, t, p.Opts)
		cancel()
		if l != nil && first != nil {
			// What the server used during the first listing is news
			// still: the second starts the server afresh.
			l.Egress.Merge(first.Egress)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		err = p.Record(s, l, pollErr)
	}
	took := time.Since(start)
	if p.Observer != nil {
		result := "ok"
		switch {
		case err != nil:
			result = "record_error"
		case pollErr != nil:
			result = "error"
		}
		p.Observer.Polled(s.Name, took, result)
	}
	return err
}

// Record stores one listing (or poll error) of s.
func (p *Poller) Record(s ServerSpec, l *mcpclient.Listing, pollErr error) error {
	if pollErr != nil {
		p.Log.Warn("poll failed", "server", s.Name, "error", visible.Message(pollErr.Error()))
	} else {
		for _, w := range l.Warnings {
			p.Log.Warn("poll warning", "server", s.Name, "warning", w)
		}
		p.Log.Debug("polled", "server", s.Name, "tools", len(l.Tools), "unchanged", l.Unchanged, "pages", l.Pages, "elapsed", l.Elapsed)
	}
	_, events, err := p.Recorder.Record(s.Name, s.Transport, l, pollErr)
	if err != nil {
		return err
	}
	if pollErr == nil {
		p.Sightings.Note(s.Name, l, time.Now())
	}
	for _, e := range events {
		LogEvent(p.Log, e)
		if p.OnEvent != nil {
			p.OnEvent(e)
		}
	}
	return nil
}

// PollAll polls servers concurrently, at most concurrency at a time, and
// returns the first failure to record.
func (p *Poller) PollAll(ctx context.Context, servers []ServerSpec, concurrency int) error {
	errs := make([]error, len(servers))
	sem := make(chan struct{}, max(concurrency, 1))
	var wg sync.WaitGroup
	// A slot is taken before the goroutine starts, so at most concurrency
	// polls' goroutines exist at once: 10,000 parked goroutines (and their
	// stacks) would be memory that grows with the fleet.
spawn:
	for i, s := range servers {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			for j := i; j < len(servers); j++ {
				errs[j] = ctx.Err()
			}
			break spawn
		}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = p.PollOne(ctx, s)
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// LogEvent writes one recorded event as a debug line, every server-chosen
// string made visible. People see events through the log alert channel,
// which is always on; this line is for tracing the recording itself.
func LogEvent(log *slog.Logger, e rugwatch.Event) {
	attrs := []any{"id", e.ID, "type", string(e.Type), "severity", string(e.Severity), "server", e.Server}
	if e.Tool != "" {
		attrs = append(attrs, "tool", visible.Line(e.Tool))
	}
	if e.ObservedDigest != "" {
		attrs = append(attrs, "observed", string(e.ObservedDigest))
	}
	if len(e.Changes) > 0 {
		attrs = append(attrs, "changes", visible.Line(report.ChangeSummary(e.Changes)))
	}
	if e.Message != "" {
		attrs = append(attrs, "message", visible.Line(e.Message))
	}
	log.Debug("event "+string(e.Type), attrs...)
}

// Fleet keeps every configured server polled on its schedule and, where
// asked, watched: the scheduler owns the polls (never two of one server at
// once), the watch sessions feed it. Apply reconciles both with a new
// config; only servers whose Key changed are touched.
type Fleet struct {
	log   *slog.Logger
	sched *Scheduler

	// pmu guards poller, which a reload swaps while polls read it; wmu
	// guards watchers. Two locks, because stopping a watch session waits
	// for it, and it may be reading the poller at that moment.
	pmu      sync.RWMutex
	poller   *Poller
	wmu      sync.Mutex
	watchers map[string]*watchHandle

	// smu guards what Apply and SetOwned last gave: every configured
	// server, and the share of them this replica holds (nil: all; a
	// cluster's replica polls and watches only what it holds a lease
	// on). It serialises the two, so a reload and a handover never
	// schedule from each other's half-made state.
	smu   sync.Mutex
	specs []ServerSpec
	owned map[string]bool
}

type watchHandle struct {
	key    string
	cancel context.CancelFunc
	done   chan struct{}
}

// NewFleet returns a fleet bound to ctx, polling at most concurrency
// servers at once.
func NewFleet(ctx context.Context, concurrency int, log *slog.Logger) *Fleet {
	return &Fleet{log: log, sched: NewScheduler(ctx, concurrency, log), watchers: map[string]*watchHandle{}}
}

func (f *Fleet) current() *Poller {
	f.pmu.RLock()
	defer f.pmu.RUnlock()
	return f.poller
}

// Apply schedules every server of specs this replica holds (all, unless
// Shared was called), recording through p from now on, and reconciles
// the watch sessions.
func (f *Fleet) Apply(ctx context.Context, specs []ServerSpec, p *Poller) error {
	f.pmu.Lock()
	f.poller = p
	f.pmu.Unlock()
	f.smu.Lock()
	defer f.smu.Unlock()
	f.specs = specs
	return f.schedule(ctx)
}

// Shared makes this fleet one replica of a cluster: from now on it polls
// and watches only the servers SetOwned last gave, none until then.
func (f *Fleet) Shared() {
	f.smu.Lock()
	defer f.smu.Unlock()
	if f.owned == nil {
		f.owned = map[string]bool{}
	}
}

// SetOwned gives the servers this replica holds now (a cluster's leases)
// and schedules and watches exactly those. A server it newly holds is
// first polled when its schedule falls due after its last poll by
// whichever replica held it.
func (f *Fleet) SetOwned(ctx context.Context, servers []string) error {
	f.smu.Lock()
	defer f.smu.Unlock()
	f.owned = make(map[string]bool, len(servers))
	for _, s := range servers {
		f.owned[s] = true
	}
	return f.schedule(ctx)
}

// schedule makes the scheduler and the watch sessions match specs and
// owned. Called with smu held.
func (f *Fleet) schedule(ctx context.Context) error {
	specs := f.specs
	var last func(string) time.Time
	if f.owned != nil {
		specs = make([]ServerSpec, 0, len(f.owned))
		for _, s := range f.specs {
			if f.owned[s.Name] {
				specs = append(specs, s)
			}
		}
		last = f.lastPolled(specs)
	}
	jobs := make([]Job, 0, len(specs))
	for _, s := range specs {
		j := Job{
			Name: s.Name, Schedule: s.Schedule, Key: s.Key,
			Poll: func(ctx context.Context) error { return f.current().PollOne(ctx, s) },
		}
		if last != nil {
			j.LastPolled = last(s.Name)
		}
		jobs = append(jobs, j)
	}
	added, removed, changed, err := f.sched.Set(jobs)
	if err != nil {
		return err
	}
	if len(added)+len(removed)+len(changed) > 0 {
		f.log.Info("servers scheduled", "added", strings.Join(added, ","), "removed", strings.Join(removed, ","), "changed", strings.Join(changed, ","))
	}
	f.reconcileWatchers(ctx, specs)
	return nil
}

// lastPolled reads when each of specs was last polled, by any replica.
func (f *Fleet) lastPolled(specs []ServerSpec) func(string) time.Time {
	p := f.current()
	if p == nil || p.Recorder == nil || p.Recorder.DB == nil {
		return nil
	}
	at := make(map[string]time.Time, len(specs))
	err := p.Recorder.DB.View(func(tx *store.Tx) error {
		for _, s := range specs {
			if t, ok := tx.LastPolled(s.Name); ok {
				at[s.Name] = t
			}
		}
		return nil
	})
	if err != nil {
		// Unknown: poll at once rather than skip a cycle.
		f.log.Warn("reading when servers were last polled", "error", err)
	}
	return func(name string) time.Time { return at[name] }
}

// PollNow polls the named servers at once through the scheduler, so a
// `check` never overlaps a scheduled poll of the same server.
func (f *Fleet) PollNow(ctx context.Context, names []string) error {
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f.sched.PollNow(ctx, n)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Watching is how many watch sessions run now.
func (f *Fleet) Watching() int {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	return len(f.watchers)
}

// Running reports whether the scheduler runs (readiness).
func (f *Fleet) Running() bool { return f.sched.Running() }

// Stop ends every watch session and poll; stdio children are killed.
func (f *Fleet) Stop() {
	f.wmu.Lock()
	hs := f.watchers
	f.watchers = map[string]*watchHandle{}
	f.wmu.Unlock()
	for _, h := range hs {
		h.cancel()
		<-h.done
	}
	f.sched.Stop()
}

func (f *Fleet) reconcileWatchers(ctx context.Context, specs []ServerSpec) {
	want := map[string]ServerSpec{}
	for _, s := range specs {
		if s.Watch {
			want[s.Name] = s
		}
	}
	opts := f.current().Opts
	f.wmu.Lock()
	defer f.wmu.Unlock()
	for name, h := range f.watchers {
		if s, ok := want[name]; ok && s.Key == h.key {
			continue
		}
		h.cancel()
		<-h.done
		delete(f.watchers, name)
	}
	for name, s := range want {
		if _, ok := f.watchers[name]; ok {
			continue
		}
		resolve := f.current().resolve(s)
		t, err := resolve()
		if err != nil {
			f.log.Error("not watching", "server", name, "error", err)
			continue
		}
		wctx, cancel := context.WithCancel(ctx)
		h := &watchHandle{key: s.Key, cancel: cancel, done: make(chan struct{})}
		w := &mcpclient.Watcher{
			Target: t, Opts: opts, Log: f.log, ConnectTimeout: s.Timeout, Resolve: resolve,
			OnListing: func(ctx context.Context, l *mcpclient.Listing, err error) { f.onListing(ctx, s, l, err) },
		}
		f.watchers[name] = h
		go func() {
			defer close(h.done)
			w.Run(wctx)
		}()
	}
}

// onListing records what a watch session saw: a listing taken over the
// session itself, or (nil, nil) when the transport wants a fresh poll.
func (f *Fleet) onListing(ctx context.Context, s ServerSpec, l *mcpclient.Listing, err error) {
	if l == nil && err == nil {
		if err := f.sched.PollNow(ctx, s.Name); err != nil && ctx.Err() == nil {
			f.log.Error("re-check after list_changed failed", "server", s.Name, "error", err)
		}
		return
	}
	err = f.sched.Exclusive(ctx, s.Name, func(context.Context) error {
		return f.current().Record(s, l, err)
	})
	if err != nil && ctx.Err() == nil {
		f.log.Error("recording watched listing failed", "server", s.Name, "error", err)
	}
}
