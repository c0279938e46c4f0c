package monitor

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// A fleet started at once is spread over its interval, a check through
// the daemon still polls any of it at once, and a reload that changes one
// server restarts that one job and leaves every other job's loop alone.
func TestSchedulerSpreadsAFleetAndReloadTouchesOneJob(t *testing.T) {
	defer goleak.VerifyNone(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := NewScheduler(ctx, 4, quietLog())
	defer s.Stop()
	polled := make(chan string, 256)
	mk := func(name, key string) Job {
		return Job{Name: name, Schedule: "@every 1h", Key: key, Poll: func(context.Context) error {
			select {
			case polled <- name + "@" + key:
			default:
			}
			return nil
		}}
	}
	fleet := func(changed string) []Job {
		var jobs []Job
		for i := range 40 {
			name, key := fmt.Sprintf("j%02d", i), "1"
			if name == changed {
				key = "2"
			}
			jobs = append(jobs, mk(name, key))
		}
		return jobs
	}
	if add, _, _, err := s.Set(fleet("")); err != nil || len(add) != 40 {
		t.Fatalf("first set: added %d, %v", len(add), err)
	}
	entries := func() map[string]*entry {
		s.mu.Lock()
		defer s.mu.Unlock()
		out := make(map[string]*entry, len(s.jobs))
		for n, e := range s.jobs {
			out[n] = e
		}
		return out
	}
	before := entries()
	// 40 jobs over a cap of 4: each first poll at its own point of the hour.
	offsets := map[time.Duration]bool{}
	for n, e := range before {
		if e.first < 0 || e.first >= time.Hour {
			t.Fatalf("%s: first poll after %v, want within its interval of 1h", n, e.first)
		}
		offsets[e.first/time.Minute] = true
	}
	if len(offsets) < 20 {
		t.Errorf("first polls of 40 jobs fall in only %d distinct minutes of the hour: not spread", len(offsets))
	}
	wait := func(want string) {
		t.Helper()
		deadline := time.NewTimer(30 * time.Second)
		defer deadline.Stop()
		for {
			select {
			case got := <-polled:
				if got == want {
					return
				}
			case <-deadline.C:
				t.Fatalf("no poll %s", want)
			}
		}
	}
	// check through the daemon does not wait for a job's slot.
	if err := s.PollNow(ctx, "j07"); err != nil {
		t.Fatal(err)
	}
	wait("j07@1")

	add, rm, ch, err := s.Set(fleet("j13"))
	if err != nil || len(add) != 0 || len(rm) != 0 || len(ch) != 1 || ch[0] != "j13" {
		t.Fatalf("reload: added %v removed %v changed %v %v", add, rm, ch, err)
	}
	// One job starting is no herd: it polls at once under its new key.
	wait("j13@2")
	after := entries()
	for n, e := range before {
		switch {
		case n == "j13":
			if after[n] == e {
				t.Errorf("the changed job kept its old loop")
			}
			select {
			case <-e.done:
			default:
				t.Errorf("the changed job's old loop still runs")
			}
			if after[n].first != 0 {
				t.Errorf("the changed job waits %v for its first poll", after[n].first)
			}
		case after[n] != e:
			t.Errorf("reload restarted unchanged job %s", n)
		}
	}
}
