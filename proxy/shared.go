package proxy

import (
	"sync"
	"time"

	"github.com/rugwatch/rugwatch/monitor"
)

// allowedCache shares readings of each server's allowed set among the
// sessions of one proxy_listen: reading it checks the signature of every
// approved tool, and a few hundred sessions each re-reading twice a second
// would spend the machine on that. A reading younger than maxAge is
// handed to the next session as is; errors are never kept, so a failing
// backend fails each session closed on its own next read. A nil cache
// reads every time (one stdio session per process).
type allowedCache struct {
	mu      sync.Mutex
	servers map[string]*allowedEntry
}

type allowedEntry struct {
	mu      sync.Mutex // held while reading: concurrent readers wait and share
	allowed monitor.Allowed
	at      time.Time
	gen     uint64 // the approvals generation the reading was taken at; 0 unknown
}

func newAllowedCache() *allowedCache {
	return &allowedCache{servers: map[string]*allowedEntry{}}
}

func (c *allowedCache) entry(server string) *allowedEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.servers[server]
	if e == nil {
		e = &allowedEntry{}
		c.servers[server] = e
	}
	return e
}

// read returns a reading of server's allowed set no older than maxAge and,
// when gen is known (not 0), taken at that approvals generation or later,
// taking one with fn (at gen) when there is none: a reading from before a
// revocation is never handed on after it.
func (c *allowedCache) read(server string, maxAge time.Duration, gen uint64, fn func() (monitor.Allowed, error)) (monitor.Allowed, error) {
	if c == nil {
		return fn()
	}
	e := c.entry(server)
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.at.IsZero() && time.Since(e.at) < maxAge && (gen == 0 || e.gen >= gen) {
		return e.allowed, nil
	}
	a, err := fn()
	if err != nil {
		e.at = time.Time{}
		return a, err
	}
	e.allowed, e.at, e.gen = a, time.Now(), gen
	return a, nil
}

// put stores a reading taken elsewhere (what Enforce returned).
func (c *allowedCache) put(server string, a monitor.Allowed) {
	if c == nil {
		return
	}
	e := c.entry(server)
	e.mu.Lock()
	e.allowed, e.at, e.gen = a, time.Now(), 0
	e.mu.Unlock()
}
