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
	mk := func(name string) Job {
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
	time.Sleep(2500 * time.Millisecond)
	cancel()
	s.Stop()
	if polls.Load() < 8+3 {
		t.Errorf("%d polls in 2.5s of four 1s jobs plus 3 forced, want at least 11", polls.Load())
	}
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
	var count sync.Map
	mk := func(name, key string) Job {
		return Job{Name: name, Schedule: "@every 1h", Key: key, Poll: func(context.Context) error {
			v, _ := count.LoadOrStore(name+key, new(atomic.Int64))
			v.(*atomic.Int64).Add(1)
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
	deadline := time.Now().Add(5 * time.Second)
	for _, k := range []string{"a2", "c1"} {
		for {
			if v, ok := count.Load(k); ok && v.(*atomic.Int64).Load() >= 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("job %s never polled", k)
			}
			time.Sleep(10 * time.Millisecond)
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
