package proxy

import (
	"context"
	"sync"
	"time"

	"github.com/rugwatch/rugwatch/mcpclient"
	"github.com/rugwatch/rugwatch/monitor"
)

// allowedCache is what the sessions of one proxy_listen share: per
// server, readings of the allowed set; per view of a server (the server
// and the client capabilities declared to it, session.view), the last
// listing recorded, the server's handshake, and one watcher of its
// list_changed. What a server lists may depend on what its client can
// do (server-everything lists its sampling tools only to clients that
// sample), so sessions share a listing only with those that would have
// been shown the same.
//
// Reading the allowed set checks the signature of every approved tool,
// and a listing is an upstream round trip, a canonical digest per tool
// and a record through the state machine: a few hundred sessions each
// doing both for every client's start would spend the machine on it, and
// a session that only lists would hold an upstream (for a stdio server, a
// process tree) for nothing. A session that starts while a listing is
// fresh answers from it and dials its own upstream only when a request
// must go there (lazily started upstreams).
//
// Errors are never kept, so a failing backend fails each session closed
// on its own next read. A nil cache shares nothing (one stdio session per
// process).
type allowedCache struct {
	// ctx bounds the shared watchers (the proxy_listen's life); wg waits
	// for them.
	ctx     context.Context
	wg      sync.WaitGroup
	mu      sync.Mutex
	servers map[string]*allowedEntry
}

type allowedEntry struct {
	mu      sync.Mutex // held while reading: concurrent readers wait and share
	allowed monitor.Allowed
	at      time.Time
	gen     uint64 // the approvals generation the reading was taken at; 0 unknown

	// listMu is held by a session taking a full listing for the server,
	// so that sessions starting together list once, not once each.
	listMu sync.Mutex

	lmu     sync.Mutex // guards listing, last, hello and subs
	listing *sharedListing
	last    recording // listing's, kept when a list_changed ends it
	hello   *mcpclient.InitializeInfo
	subs    map[*session]struct{}
	stop    context.CancelFunc // the shared watcher's, while it runs
}

// sharedListing is the last listing a session of the server recorded and
// the allowed set it installed with it.
type sharedListing struct {
	rec     recording // rec.tools are the live digests
	allowed monitor.Allowed
	gen     uint64    // approvals generation it was read at; 0 unknown
	at      time.Time // when it was listed (rec.at: last recorded)
}

// shareFor bounds how long a recorded listing is handed to sessions that
// did not take it, as recordEvery bounds re-recording one session's: a
// server that changed without saying so (no list_changed) is listed again
// within it. A list_changed, an approval or a revocation ends it at once.
const shareFor = recordEvery

func newAllowedCache(ctx context.Context) *allowedCache {
	return &allowedCache{ctx: ctx, servers: map[string]*allowedEntry{}}
}

// maxCachedEntries bounds the cache: a view is keyed by whatever
// capabilities a client declares, so without a bound a client cycling
// through them would grow it for the life of proxy_listen.
const maxCachedEntries = 1024

// entry returns the cache's entry for key (a server, or a view of one),
// making it. At the bound, entries no session follows are dropped (what
// they held is read again when next asked for); if every one is followed,
// the new entry is the caller's alone and shares nothing.
func (c *allowedCache) entry(key string) *allowedEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.servers[key]
	if e != nil {
		return e
	}
	e = &allowedEntry{subs: map[*session]struct{}{}}
	if len(c.servers) >= maxCachedEntries {
		for k, old := range c.servers {
			old.lmu.Lock()
			idle := len(old.subs) == 0 && old.stop == nil
			old.lmu.Unlock()
			if idle {
				delete(c.servers, k)
			}
		}
		if len(c.servers) >= maxCachedEntries {
			return e
		}
	}
	c.servers[key] = e
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
	defer e.mu.Unlock()
	if older(a, e.allowed.Seq, e.allowed.ReadAt) {
		return // a reading that shows more was stored meanwhile
	}
	e.allowed, e.at, e.gen = a, time.Now(), 0
}

// recorded keeps the listing a session just took, as recorded in rec,
// with the allowed set installed for it at approvals generation gen.
func (c *allowedCache) recorded(server string, rec recording, allowed monitor.Allowed, gen uint64) {
	if c == nil {
		return
	}
	e := c.entry(server)
	e.lmu.Lock()
	e.listing = &sharedListing{rec: rec, allowed: allowed, gen: gen, at: time.Now()}
	e.lmu.Unlock()
}

// lastRecording is what the server's last shared listing recorded (zero
// when there is none), kept past its freshness: a session's listing that
// matches it need not be recorded again within recordEvery.
func (c *allowedCache) lastRecording(server string) recording {
	if c == nil {
		return recording{}
	}
	e := c.entry(server)
	e.lmu.Lock()
	defer e.lmu.Unlock()
	if e.listing == nil {
		return e.last
	}
	return e.listing.rec
}

// fresh returns the server's shared listing when one is younger than
// shareFor and the approvals generation has not moved since it was read
// (gen 0, unknown, never matches: without a generation a session cannot
// tell a revocation happened, so it lists and reads for itself).
func (c *allowedCache) fresh(server string, gen uint64) (*sharedListing, bool) {
	if c == nil || gen == 0 {
		return nil, false
	}
	e := c.entry(server)
	e.lmu.Lock()
	defer e.lmu.Unlock()
	l := e.listing
	if l == nil || l.gen != gen || time.Since(l.at) >= shareFor {
		return nil, false
	}
	return l, true
}

// forget ends the shared listing: the server said its list changed.
func (c *allowedCache) forget(server string) {
	if c == nil {
		return
	}
	e := c.entry(server)
	e.lmu.Lock()
	if e.listing != nil {
		e.last = e.listing.rec
	}
	e.listing = nil
	e.lmu.Unlock()
}

// unchanged reports whether the watcher's listing l says what the shared
// listing does.
func (c *allowedCache) unchanged(server string, l *mcpclient.Listing) bool {
	e := c.entry(server)
	e.lmu.Lock()
	defer e.lmu.Unlock()
	if e.listing == nil || len(l.Refused) > 0 || l.InstructionsDigest != e.listing.rec.instructions {
		return false
	}
	if len(l.Tools) != len(e.listing.rec.tools) {
		return false
	}
	for _, t := range l.Tools {
		if e.listing.rec.tools[t.Name] != t.Digest {
			return false
		}
	}
	return true
}

// listing serialises full listings of server: fn runs with no other
// session of the server listing.
func (c *allowedCache) listing(server string, fn func() bool) bool {
	if c == nil {
		return fn()
	}
	e := c.entry(server)
	e.listMu.Lock()
	defer e.listMu.Unlock()
	return fn()
}

// greeted keeps the server's handshake, as a session's dial saw it.
func (c *allowedCache) greeted(server string, init mcpclient.InitializeInfo) {
	if c == nil {
		return
	}
	e := c.entry(server)
	e.lmu.Lock()
	e.hello = &init
	e.lmu.Unlock()
}

// greeting is the server's handshake as the last dial saw it, while a
// fresh shared listing stands beside it: a session may then answer its
// client's initialize without an upstream of its own.
func (c *allowedCache) greeting(server string, gen uint64) (mcpclient.InitializeInfo, bool) {
	if _, ok := c.fresh(server, gen); !ok {
		return mcpclient.InitializeInfo{}, false
	}
	e := c.entry(server)
	e.lmu.Lock()
	defer e.lmu.Unlock()
	if e.hello == nil {
		return mcpclient.InitializeInfo{}, false
	}
	return *e.hello, true
}

// watch subscribes s to the server's list_changed: the first subscriber
// starts one watcher (with its session's Watch) for all, the last to
// leave stops it. Each change ends the shared listing and has every
// subscriber list again (the first lists, the rest share its listing).
func (c *allowedCache) watch(s *session) (leave func()) {
	view, run := s.view(), s.opts.Watch
	e := c.entry(view)
	e.lmu.Lock()
	defer e.lmu.Unlock()
	e.subs[s] = struct{}{}
	if e.stop == nil {
		ctx, cancel := context.WithCancel(c.ctx)
		e.stop = cancel
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			started := false
			run(ctx, s.declared(), func(l *mcpclient.Listing) {
				first := !started
				started = true
				if ctx.Err() != nil {
					return // stopping: its last session left
				}
				if first && l == nil {
					// A Streamable HTTP watcher's first word is "list
					// anew" because it just connected, not because
					// anything changed; a change it missed before is
					// caught when the shared listing ages out, as for a
					// server that never says list_changed.
					return
				}
				if l != nil && c.unchanged(view, l) {
					return // the watcher's own first listing, or a spurious list_changed
				}
				c.forget(view)
				e.lmu.Lock()
				subs := make([]*session, 0, len(e.subs))
				for sub := range e.subs {
					subs = append(subs, sub)
				}
				e.lmu.Unlock()
				for _, sub := range subs {
					sub.relistSoon(sub.life)
				}
			})
		}()
	}
	return func() {
		e.lmu.Lock()
		defer e.lmu.Unlock()
		delete(e.subs, s)
		if len(e.subs) == 0 && e.stop != nil {
			e.stop()
			e.stop = nil
		}
	}
}
