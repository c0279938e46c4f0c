package monitor

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/robfig/cron/v3"
)

// Job is one server's recurring poll.
type Job struct {
	Name     string
	Schedule string // cron spec or "@every 30s"
	// Key identifies the job's configuration: Set replaces a job whose key
	// changed and leaves an unchanged one running.
	Key  string
	Poll func(ctx context.Context) error
	// LastPolled, when set, is when the server was last polled by
	// anyone (a cluster replica that held it before): the first poll
	// waits for the next one its schedule gives after that, instead of
	// running at once, so a handover does not poll a server twice in a
	// cycle.
	LastPolled time.Time
}

// ParseSchedule parses a cron spec (five fields) or a descriptor such as
// "@every 30s" or "@hourly".
func ParseSchedule(spec string) (cron.Schedule, error) {
	s, err := cron.ParseStandard(spec)
	if err != nil {
		return nil, fmt.Errorf("schedule %q: %w", spec, err)
	}
	return s, nil
}

// Scheduler polls every job on its own schedule, with a per-job jitter so
// a fleet does not poll in lock-step, never two polls of one job at once,
// and at most Concurrency polls in flight overall. robfig/cron is used only
// to parse schedules: its runner has no jitter, no concurrency cap and logs
// to stdout.
type Scheduler struct {
	log *slog.Logger
	sem chan struct{}
	now func() time.Time

	mu     sync.Mutex
	ctx    context.Context
	jobs   map[string]*entry
	wg     sync.WaitGroup
	closed bool
}

type entry struct {
	job     Job
	sched   cron.Schedule
	jitter  time.Duration
	first   time.Duration // wait before the first poll (see firstPollAt)
	cancel  context.CancelFunc
	done    chan struct{}
	trigger chan chan error // poll now; the reply channel gets the result
	pollMu  sync.Mutex      // one poll of this job at a time
}

// DefaultConcurrency is how many polls run at once unless configured:
// eight per core, at least 16. A poll mostly waits on its round trips
// (a steady poll of 50 tools takes about 4 ms of CPU against tens of ms
// of network), so a core is kept busy by several in flight, and each
// holds at most one listing in memory, so memory is bounded by this
// number, not by the fleet.
func DefaultConcurrency() int { return max(16, 8*runtime.GOMAXPROCS(0)) }

// NewScheduler returns a scheduler bound to ctx: cancelling ctx stops
// every job; Wait returns once they have stopped.
func NewScheduler(ctx context.Context, concurrency int, log *slog.Logger) *Scheduler {
	if concurrency <= 0 {
		concurrency = DefaultConcurrency()
	}
	return &Scheduler{log: log, sem: make(chan struct{}, concurrency), ctx: ctx, jobs: map[string]*entry{}, now: time.Now}
}

// Set makes the running jobs equal to jobs: new ones start with a poll
// right away, removed ones stop, changed ones restart, unchanged ones go on
// undisturbed. It returns the names added, removed and changed. When more
// jobs start at once than polls may run at once (a daemon starting on a
// fleet), each one's first poll is put at a point of its interval fixed
// by its name instead, so 10,000 servers are spread over the interval
// rather than all queued at the start and kept in lock-step after.
func (s *Scheduler) Set(jobs []Job) (added, removed, changed []string, err error) {
	parsed := make(map[string]cron.Schedule, len(jobs))
	for _, j := range jobs {
		sc, err := ParseSchedule(j.Schedule)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("server %s: %w", j.Name, err)
		}
		parsed[j.Name] = sc
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, nil, nil, errors.New("scheduler stopped")
	}
	want := make(map[string]Job, len(jobs))
	for _, j := range jobs {
		want[j.Name] = j
	}
	var stopping []*entry
	for name, e := range s.jobs {
		j, keep := want[name]
		if keep && j.Key == e.job.Key {
			continue
		}
		e.cancel()
		stopping = append(stopping, e)
		delete(s.jobs, name)
		if keep {
			changed = append(changed, name)
		} else {
			removed = append(removed, name)
		}
	}
	s.mu.Unlock()
	// A changed job's old loop must be gone before its successor starts, or
	// the two could poll one server at once.
	for _, e := range stopping {
		<-e.done
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return added, removed, changed, errors.New("scheduler stopped")
	}
	starting := 0
	for _, j := range jobs {
		if _, running := s.jobs[j.Name]; !running {
			starting++
		}
	}
	spread := starting > cap(s.sem)
	for _, j := range jobs {
		if _, running := s.jobs[j.Name]; running {
			continue
		}
		if !slices.Contains(changed, j.Name) {
			added = append(added, j.Name)
		}
		s.start(j, parsed[j.Name], spread)
	}
	return added, removed, changed, nil
}

func (s *Scheduler) start(j Job, sc cron.Schedule, spread bool) {
	ctx, cancel := context.WithCancel(s.ctx)
	e := &entry{job: j, sched: sc, jitter: jitterFor(j.Name, sc, s.now()), cancel: cancel,
		done: make(chan struct{}), trigger: make(chan chan error)}
	if spread {
		e.first = firstPollAt(j.Name, sc, s.now())
	}
	if !j.LastPolled.IsZero() {
		// Overdue (or never polled in its interval): at once.
		e.first = max(sc.Next(j.LastPolled).Add(e.jitter).Sub(s.now()), 0)
	}
	s.jobs[j.Name] = e
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(e.done)
		s.loop(ctx, e)
	}()
}

// jitterFor spreads jobs over a tenth of their interval (at most a
// minute), fixed per name so a server keeps its slot across restarts.
func jitterFor(name string, sc cron.Schedule, now time.Time) time.Duration {
	first := sc.Next(now)
	interval := sc.Next(first).Sub(first)
	span := min(interval/10, time.Minute)
	if span <= 0 {
		return 0
	}
	h := fnv.New64a()
	h.Write([]byte(name))
	return time.Duration(h.Sum64() % uint64(span))
}

// firstPollAt is how long after start a job of a fleet started at once
// polls first: a point of its interval fixed by its name (stable across
// restarts, spread evenly over a fleet). With "@every" schedules the next
// polls keep that phase, as each is timed from the one before.
func firstPollAt(name string, sc cron.Schedule, now time.Time) time.Duration {
	first := sc.Next(now)
	interval := sc.Next(first).Sub(first)
	if interval <= 0 {
		return 0
	}
	h := fnv.New64a()
	h.Write([]byte("first\x00" + name))
	return time.Duration(h.Sum64() % uint64(interval))
}

func (s *Scheduler) loop(ctx context.Context, e *entry) {
	if e.first <= 0 {
		s.run(ctx, e) // first poll right after start
	} else if !s.wait(ctx, e, e.first) {
		// The first poll at the job's spread-out point in its interval;
		// a PollNow (check through the daemon) need not wait for it.
		return
	}
	for {
		next := e.sched.Next(s.now()).Add(e.jitter)
		if !s.wait(ctx, e, time.Until(next)) {
			return
		}
	}
}

// wait polls once after d, or at once when asked to (PollNow), and
// reports false when ctx ended first.
func (s *Scheduler) wait(ctx context.Context, e *entry, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		s.run(ctx, e)
	case reply := <-e.trigger:
		reply <- s.run(ctx, e)
	}
	return true
}

// run polls once under the job's lock and the global cap.
func (s *Scheduler) run(ctx context.Context, e *entry) error {
	release, err := s.acquire(ctx, e)
	if err != nil {
		return err
	}
	defer release()
	err = e.job.Poll(ctx)
	if err != nil && ctx.Err() == nil {
		s.log.Error("poll not recorded", "server", e.job.Name, "error", err)
	}
	return err
}

// PollNow polls a job at once (or after the poll already running) and
// returns when it is recorded.
func (s *Scheduler) PollNow(ctx context.Context, name string) error {
	s.mu.Lock()
	e, ok := s.jobs[name]
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("no server %q is scheduled", name)
	}
	reply := make(chan error, 1)
	select {
	case e.trigger <- reply:
	case <-e.done:
		return errors.New("server " + name + " was unscheduled")
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Exclusive runs fn under the job's poll lock, so a watch session's
// re-check never overlaps a scheduled poll of the same server.
func (s *Scheduler) Exclusive(ctx context.Context, name string, fn func(ctx context.Context) error) error {
	s.mu.Lock()
	e, ok := s.jobs[name]
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("no server %q is scheduled", name)
	}
	release, err := s.acquire(ctx, e)
	if err != nil {
		return err
	}
	defer release()
	return fn(ctx)
}

// acquire takes a place under the global cap, then the job's own lock.
func (s *Scheduler) acquire(ctx context.Context, e *entry) (release func(), err error) {
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	e.pollMu.Lock()
	if err := ctx.Err(); err != nil {
		e.pollMu.Unlock()
		<-s.sem
		return nil, err
	}
	return func() { e.pollMu.Unlock(); <-s.sem }, nil
}

// Running reports whether the scheduler accepts jobs.
func (s *Scheduler) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.closed && s.ctx.Err() == nil
}

// Stop cancels every job and waits for running polls to end.
func (s *Scheduler) Stop() {
	s.mu.Lock()
	s.closed = true
	for _, e := range s.jobs {
		e.cancel()
	}
	s.mu.Unlock()
	s.wg.Wait()
}
