package monitor

import (
	"sync"
	"time"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/mcpclient"
)

// cloakWindow is how recent a poll must be for the proxy to compare what
// it is shown with what the poll saw.
const cloakWindow = time.Minute

// Sightings remembers, per server, what the last successful poll saw, so
// that the proxy can tell a server that shows it other tools than it
// showed the poller at the same revision within a minute: a server
// detecting who asks (cloaking). It lives as long as the process; a proxy
// with no daemon running shares no memory with a poll and compares
// nothing. Safe for concurrent use; the zero value is ready.
type Sightings struct {
	mu sync.Mutex
	m  map[string]sighting
}

type sighting struct {
	at       time.Time
	revision string
	digests  map[string]rugwatch.Digest
}

// Note records a successful poll's listing of server.
func (s *Sightings) Note(server string, l *mcpclient.Listing, at time.Time) {
	if s == nil || l == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]sighting{}
	}
	if l.Unchanged {
		// The listing was byte-identical to the last one: same tools,
		// newer time.
		if prev, ok := s.m[server]; ok {
			prev.at = at
			s.m[server] = prev
		}
		return
	}
	d := make(map[string]rugwatch.Digest, len(l.Tools))
	for _, t := range l.Tools {
		d[t.Name] = t.Digest
	}
	s.m[server] = sighting{at: at, revision: l.ProtocolVersion, digests: d}
}

// Cloaked lists the tools whose definition in l differs from the last
// poll's of server (or that only one of them has, unless l is Partial), when that poll was at
// the same revision within cloakWindow of now; with each, the digest the
// poll saw ("" for a tool it did not list).
func (s *Sightings) Cloaked(server string, l *mcpclient.Listing, now time.Time) map[string]rugwatch.Digest {
	if s == nil || l == nil {
		return nil
	}
	s.mu.Lock()
	prev, ok := s.m[server]
	s.mu.Unlock()
	if !ok || now.Sub(prev.at) > cloakWindow || prev.revision != l.ProtocolVersion {
		return nil
	}
	out := map[string]rugwatch.Digest{}
	seen := map[string]bool{}
	for _, t := range l.Tools {
		seen[t.Name] = true
		if prev.digests[t.Name] != t.Digest {
			out[t.Name] = prev.digests[t.Name]
		}
	}
	if l.Partial {
		// Like with like: a client that cannot sample may be shown
		// fewer tools than the poll, which asks as one that can. A
		// tool the poll saw and the proxy was not shown says nothing;
		// one the proxy was shown otherwise, or only, still does.
		return out
	}
	for name, d := range prev.digests {
		if !seen[name] {
			out[name] = d
		}
	}
	return out
}
