package proxy

import "sync"

// endGuard lets a goroutine started from outside a session's own (the
// upstream's read loop, a POST's handler) join the WaitGroup the session
// waits on at its end, but only until that end begins: an Add once Wait
// may have begun is a race the WaitGroup does not allow.
type endGuard struct {
	mu    sync.Mutex
	ended bool
}

// join adds one to wg, or returns false once the end has begun, when
// nothing more may start.
func (e *endGuard) join(wg *sync.WaitGroup) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ended {
		return false
	}
	wg.Add(1)
	return true
}

// end begins the end: wg may be waited on from now.
func (e *endGuard) end() {
	e.mu.Lock()
	e.ended = true
	e.mu.Unlock()
}
