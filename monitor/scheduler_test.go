package monitor

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestSchedulerPollsOnScheduleNeverTwiceAtOnce(t *testing.T) {
	defer goleak.VerifyNone(t)
	ctx, cancel := context.WithCancel(context.Background())
	s := NewScheduler(ctx, 2, quietLog())
	var polls, inFlight, maxInFlight, overlap atomic.Int64
	var busy sync.Map
	var perJob sync.Map // name → *atomic.Int64
	polled := make(chan struct{}, 1)
	mk := func(name string) Job {
		n, _ := perJob.LoadOrStore(name, new(atomic.Int64))
		count := n.(*atomic.Int64)
		return Job{Name: name, Schedule: "@every 1s", Key: "k", Poll: func(ctx context.Context) error {
			if _, loaded := busy.LoadOrStore(name, true); loaded {
				overlap.Add(1)
			}
			defer busy.Delete(name)
			n := inFlight.Add(1)
			defer inFlight.Add(-1)
			for {
				m := maxInFlight.Load()
				if n <= m || maxInFlight.CompareAndSwap(m, n) {
					break
				}
			}
			polls.Add(1)
			count.Add(1)
			select {
			case polled <- struct{}{}:
			default:
			}
			// A poll that takes a while is the behaviour under test: it
			// makes the four jobs and the forced polls overlap, so the cap
			// and the per-job lock have something to refuse.
			time.Sleep(50 * time.Millisecond)
			return nil
		}}
	}
	if _, _, _, err := s.Set([]Job{mk("a"), mk("b"), mk("c"), mk("d")}); err != nil {
		t.Fatal(err)
	}
	// PollNow while scheduled polls run.
	for range 3 {
		if err := s.PollNow(ctx, "a"); err != nil {
			t.Fatal(err)
		}
	}
	// Wait for what the schedule must produce, not for a span of time:
	// every job polled again by its 1s schedule (first run plus at least
	// one more), and as many polls in all as 2.5s of four 1s jobs and 3
	// forced polls give. How soon that happens is not asserted.
	enough := func() bool {
		if polls.Load() < 8+3 {
			return false
		}
		for _, name := range []string{"a", "b", "c", "d"} {
			if n, _ := perJob.Load(name); n.(*atomic.Int64).Load() < 2 {
				return false
			}
		}
		return true
	}
	deadline := time.NewTimer(60 * time.Second)
	defer deadline.Stop()
	for !enough() {
		select {
		case <-polled:
		case <-deadline.C:
			t.Fatalf("%d polls of four 1s jobs plus 3 forced, want at least 11 and two of each job", polls.Load())
		}
	}
	cancel()
	s.Stop()
	if maxInFlight.Load() > 2 {
		t.Errorf("%d polls in flight with a cap of 2", maxInFlight.Load())
	}
	if overlap.Load() != 0 {
		t.Errorf("%d overlapping polls of one server", overlap.Load())
	}
}

func TestSchedulerSetAddsRemovesChanges(t *testing.T) {
	defer goleak.VerifyNone(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := NewScheduler(ctx, 4, quietLog())
	defer s.Stop()
	polled := make(chan string, 64)
	mk := func(name, key string) Job {
		return Job{Name: name, Schedule: "@every 1h", Key: key, Poll: func(context.Context) error {
			select {
			case polled <- name + key:
			default: // more polls than the test reads; it needs only the first
			}
			return nil
		}}
	}
	add, rm, ch, err := s.Set([]Job{mk("a", "1"), mk("b", "1")})
	if err != nil || len(add) != 2 || len(rm) != 0 || len(ch) != 0 {
		t.Fatalf("first set: %v %v %v %v", add, rm, ch, err)
	}
	add, rm, ch, err = s.Set([]Job{mk("a", "2"), mk("c", "1")})
	if err != nil || len(add) != 1 || add[0] != "c" || len(rm) != 1 || rm[0] != "b" || len(ch) != 1 || ch[0] != "a" {
		t.Fatalf("second set: added %v removed %v changed %v %v", add, rm, ch, err)
	}
	// A job polls right after it starts: the changed one under its new
	// key, and the added one. (The first two may be stopped by the second
	// Set before their first poll.)
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	want := map[string]bool{"a2": true, "c1": true}
	for len(want) > 0 {
		select {
		case k := <-polled:
			delete(want, k)
		case <-deadline.C:
			t.Fatalf("jobs %v never polled", want)
		}
	}
	if _, _, _, err := s.Set([]Job{{Name: "x", Schedule: "every day", Poll: func(context.Context) error { return nil }}}); err == nil {
		t.Fatal("bad schedule accepted")
	}
}

func TestJitterIsBoundedAndStable(t *testing.T) {
	sc, _ := ParseSchedule("@every 1m")
	now := time.Now()
	j1 := jitterFor("server-1", sc, now)
	if j1 != jitterFor("server-1", sc, now.Add(time.Hour)) || j1 < 0 || j1 >= 6*time.Second {
		t.Fatalf("jitter %v", j1)
	}
	seen := map[time.Duration]bool{}
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		seen[jitterFor(n, sc, now)] = true
	}
	if len(seen) < 4 {
		t.Errorf("jitter does not spread servers: %v", seen)
	}
}
