package mcpclient

import (
	"context"
	"encoding/json"
	"sync"
	"time"
)

// server/discover is asked first and waited for only briefly (discoverWait):
// a handshake-era server may ignore the method, and initialize must keep
// time. Measured from when the request is sent, that wait also covered a
// stdio server's start, and `npx -y pkg` spends seconds installing pkg
// before the server reads a byte: under load the install outlasted the
// wait, the poll fell back to initialize, and a server of both eras was
// recorded at the handshake revision on one poll and at 2026-07-28 on the
// next, a false launch.drifted.
//
// So for a stdio server the wait has two phases. Until the server first
// writes on stdout (its first byte, a banner included: npx itself writes
// to stderr), it is starting, and may take all of the dial's time but a
// reserve for initialize (startWait). From that byte on, the server/discover
// answer gets discoverWait, as before. The revision a server negotiates
// then no longer depends on how long its launcher took.

// maxStartWait bounds a stdio server's silent start when the dial has no
// deadline of its own.
const maxStartWait = 2 * time.Minute

// startWait is how long a stdio server may stay silent after
// server/discover was sent: what is left of the dial's bound, less a
// quarter of it (at most maxDiscoverWait) kept for initialize, should the
// server never answer the method.
func startWait(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		return left - min(left/4, maxDiscoverWait)
	}
	return maxStartWait
}

// askDiscover sends server/discover with params p and waits for its answer
// as described above; over HTTP, where there is no start to wait for, for
// discoverWait.
func (s *Session) askDiscover(ctx context.Context, p json.RawMessage) (json.RawMessage, error) {
	if s.stdout == nil {
		dctx, cancel := context.WithTimeout(ctx, discoverWait(ctx))
		defer cancel()
		return s.callRaw(dctx, "server/discover", p)
	}
	giveUp, stop := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { s.discoverClock(ctx, giveUp, stop) })
	defer func() {
		close(stop)
		wg.Wait()
	}()
	return s.callUntil(ctx, s.nextID.Add(1), "server/discover", p, giveUp)
}

// discoverClock closes giveUp when server/discover has waited long enough:
// startWait for the server's first byte, then discoverWait from it. It
// returns at once when stop is closed (the answer came, or ctx ended).
func (s *Session) discoverClock(ctx context.Context, giveUp chan<- struct{}, stop <-chan struct{}) {
	start := time.NewTimer(startWait(ctx))
	defer start.Stop()
	select {
	case <-s.stdout.ready:
	case <-start.C:
		// Silent all along: a server that ignores the method without a
		// word, or one still starting; initialize gets the reserve.
		close(giveUp)
		return
	case <-stop:
		return
	}
	wait := time.NewTimer(discoverWait(ctx))
	defer wait.Stop()
	select {
	case <-wait.C:
		close(giveUp)
	case <-stop:
	}
}
