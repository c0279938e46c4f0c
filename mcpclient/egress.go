package mcpclient

import (
	"slices"
	"strings"
	"sync"

	"github.com/rugwatch/rugwatch/sandbox"
)

// Behaviour pinning: where a sandboxed stdio server goes through its egress
// path is a fact of the poll, like its tools. This file collects it for
// the listing and hands the sandbox the pin the caller verified; what a
// new destination means is the monitor's to decide.

// MaxEgressPerPoll bounds the destinations one listing reports: a hostile
// server can make up thousands of names under a wildcard of its
// allow-list. Past it, destinations are only counted (EgressUse.Dropped).
const MaxEgressPerPoll = 64

// EgressUse is where a server went through its sandbox's egress path:
// every distinct destination ("host:port" as the egress proxy saw it: a
// CONNECT authority or a forwarded request's host) that its allow-list
// permits, outside the launcher's registry.
type EgressUse struct {
	Dests []EgressDest `json:"dests"` // sorted by Dest
	// Dropped counts distinct destinations past MaxEgressPerPoll.
	Dropped int `json:"dropped,omitempty"`
}

// EgressDest is one destination a server used, or tried to: Refused says
// egress_mode: pinned refused it (it is not approved for the server).
type EgressDest struct {
	Dest    string `json:"dest"`
	Refused bool   `json:"refused,omitempty"`
}

// EgressPin is the destinations approved for a server, verified by
// whoever sets Sandbox.EgressPin (the monitor checks the signed approval).
type EgressPin struct {
	Dests []string `json:"dests"`
}

// egressUse collects one poll's (or one session's) EgressUse.
type egressUse struct {
	mu      sync.Mutex
	seen    map[string]int // dest → index in dests
	dests   []EgressDest
	dropped int
	// taken are the dests and dropped already on a listing (take).
	taken, takenDropped int
}

func (u *egressUse) add(dest string, refused bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if i, ok := u.seen[dest]; ok {
		// Once refused, always shown as refused: what the server met.
		u.dests[i].Refused = u.dests[i].Refused || refused
		return
	}
	if len(u.dests) >= MaxEgressPerPoll {
		u.dropped++
		return
	}
	if u.seen == nil {
		u.seen = map[string]int{}
	}
	u.seen[dest] = len(u.dests)
	u.dests = append(u.dests, EgressDest{Dest: dest, Refused: refused})
}

// take returns what no listing has carried yet: a long session (a watch,
// a proxy's upstream) reports each destination once, on the listing after
// it was used.
func (u *egressUse) take() EgressUse {
	if u == nil {
		return EgressUse{}
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	out := EgressUse{Dests: slices.Clone(u.dests[u.taken:]), Dropped: u.dropped - u.takenDropped}
	u.taken, u.takenDropped = len(u.dests), u.dropped
	return out
}

// merge adds more to e, keeping it sorted and each destination once.
func (e *EgressUse) merge(more EgressUse) {
	for _, d := range more.Dests {
		i, found := slices.BinarySearchFunc(e.Dests, d.Dest, func(a EgressDest, dest string) int { return strings.Compare(a.Dest, dest) })
		if found {
			e.Dests[i].Refused = e.Dests[i].Refused || d.Refused
			continue
		}
		e.Dests = slices.Insert(e.Dests, i, d)
	}
	e.Dropped += more.Dropped
}

// Merge is merge for a caller that polled twice for one record (a listing
// taken again after the first went stale): nothing either saw is lost.
func (e *EgressUse) Merge(more *EgressUse) {
	if e != nil && more != nil {
		e.merge(*more)
	}
}

// hasEgressPath says whether the session's server ran with an egress
// path: sandboxed, with network egress. Only then is there an EgressUse.
func (s *Session) hasEgressPath() bool {
	if s.proc == nil || !s.proc.sandboxed {
		return false
	}
	n, err := sandbox.ParseNetwork(string(s.target.Sandbox.Network))
	return err == nil && n == sandbox.NetEgress
}

// noteEgress puts on l what the server used since the last listing, for a
// server with an egress path; l.Egress stays nil otherwise.
func (s *Session) noteEgress(l *Listing) {
	if !s.hasEgressPath() {
		return
	}
	use := s.target.Sandbox.egress.take()
	l.Egress = &EgressUse{Dests: []EgressDest{}}
	l.Egress.merge(use)
}

// sandboxPin is the sandbox's Pin for sb: the pin to enforce (with
// egress_mode: pinned and an approved set), the launcher's registry
// exempt, and every use reported to the poll's collector.
func (sb Sandbox) sandboxPin() *sandbox.Pin {
	p := &sandbox.Pin{Exempt: sb.EgressExempt}
	if sb.EgressPinned && sb.EgressPin != nil {
		p.Enforce, p.Dests = true, sb.EgressPin.Dests
	}
	if sb.egress != nil {
		p.OnUse = sb.egress.add
	}
	return p
}

// ValidDest says whether dest is a destination as the egress path names
// them (sandbox.CanonicalDest): what a listing that crossed a socket, or
// a signed pin, must hold before anyone believes or shows it.
func ValidDest(dest string) bool {
	c, err := sandbox.CanonicalDest(dest)
	return err == nil && c == dest
}
