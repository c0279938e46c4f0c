package proxy

import (
	"sync"
	"testing"
)

// TestEndGuard: joins count until the end begins, none after, so the
// WaitGroup the end waits on never sees an Add once waiting may start.
func TestEndGuard(t *testing.T) {
	var (
		e  endGuard
		wg sync.WaitGroup
	)
	if !e.join(&wg) {
		t.Fatal("a join before the end was refused")
	}
	e.end()
	if e.join(&wg) {
		t.Fatal("a join after the end was let in")
	}
	waited := make(chan struct{})
	go func() { wg.Wait(); close(waited) }()
	wg.Done() // the one join before the end, and only it
	<-waited
}
