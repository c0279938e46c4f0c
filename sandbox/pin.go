package sandbox

import (
	"fmt"
	"slices"
)

// Pin is behaviour pinning's part of the egress path. The allow-list
// bounds what a server may reach at all; the pin is the subset a human
// approved for it, learnt from what it used. A server whose code changed
// to send data somewhere new is then seen, and with Enforce refused, even
// when every tool definition stays the same. The caller decides what a
// destination outside the pin means; this only sees and, with Enforce,
// refuses.
type Pin struct {
	// Exempt lists allow-list patterns outside pinning: the package
	// registry a launcher fetches the server from, which the launch
	// identity already pins. They are neither reported nor refused here.
	Exempt []string
	// Enforce refuses every destination Allow permits that Exempt does
	// not cover and Dests does not hold (`egress_mode: pinned`).
	Enforce bool
	// Dests are the approved destinations, "host:port" as OnUse names
	// them (CanonicalDest).
	Dests []string
	// OnUse, if set, is called once per distinct destination Allow
	// permits and Exempt does not cover: with refused set when Enforce
	// refused it, else once it was connected to. At most maxSeen
	// destinations are reported for the life of the Egress.
	OnUse func(dest string, refused bool)
}

// CanonicalDest is dest ("host:port") in the one form the egress path
// names destinations in: a lower-case name without a trailing dot, or a
// canonical address (IPv6 bracketed). Callers check a stored pin with it,
// so a destination written any other way never matches.
func CanonicalDest(dest string) (string, error) {
	hp, err := parseHostPort(dest)
	if err != nil {
		return "", fmt.Errorf("destination %q: %w", dest, err)
	}
	return hp.String(), nil
}

// exempt says whether p leaves dest out of pinning.
func (p *Pin) exempt(dest hostPort) bool { return p == nil || permits(p.Exempt, dest) }

// refuses says whether p refuses d, a destination Allow permits.
func (p *Pin) refuses(dest hostPort) bool {
	return p != nil && p.Enforce && !p.exempt(dest) && !slices.Contains(p.Dests, dest.String())
}

// notePinned reports d's use to the pin, once per destination.
func (e *Egress) notePinned(dest hostPort, refused bool) {
	p := e.Pin
	if p == nil || p.OnUse == nil || p.exempt(dest) {
		return
	}
	d := dest.String()
	if e.firstTime(&e.pinned, d) {
		p.OnUse(d, refused)
	}
}
