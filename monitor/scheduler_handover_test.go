package monitor

import (
	"context"
	"log/slog"
	"testing"
	"time"
)

// A server taken over from another replica is first polled when its
// schedule falls due after its last poll, not at once: a handover must not
// poll a server twice in a cycle. One overdue, or never polled, is polled
// at once.
func TestSchedulerFirstPollFollowsLastPolled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := NewScheduler(ctx, 4, slog.New(slog.DiscardHandler))
	defer s.Stop()
	now := time.Now()
	polled := make(chan string, 4)
	job := func(name string, last time.Time) Job {
		return Job{Name: name, Schedule: "@every 1h", Key: "k", LastPolled: last,
			Poll: func(context.Context) error { polled <- name; return nil }}
	}
	if _, _, _, err := s.Set([]Job{
		job("recent", now.Add(-10*time.Minute)),
		job("overdue", now.Add(-2*time.Hour)),
		job("fresh", time.Time{}),
	}); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	recent, overdue := s.jobs["recent"].first, s.jobs["overdue"].first
	s.mu.Unlock()
	if recent < 49*time.Minute || recent > 51*time.Minute+6*time.Minute {
		t.Errorf("polled 10m ago on @every 1h: first poll in %v, want about 50m (plus jitter)", recent)
	}
	if overdue != 0 {
		t.Errorf("overdue: first poll in %v, want at once", overdue)
	}
	got := map[string]bool{<-polled: true, <-polled: true}
	if !got["overdue"] || !got["fresh"] {
		t.Fatalf("polled at once: %v, want overdue and fresh", got)
	}
	select {
	case n := <-polled:
		t.Fatalf("%s polled again at once", n)
	default:
	}
}
