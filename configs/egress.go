package configs

// Behaviour pinning's config: `egress_mode`, in defaults and per command
// server. It is a key of its own beside `egress:` rather than a form of
// it, so `egress: [..]` keeps meaning exactly the allow-list it always
// did, a server's own list still adds to the defaults' while its mode
// overrides theirs, and a strict decoder needs no second shape of one key.

// Egress modes.
const (
	// EgressAlert (the default): a destination outside the approved set
	// is let through (the allow-list permits it) and raises egress.drifted.
	EgressAlert = "alert"
	// EgressPinned: it is also refused until approved.
	EgressPinned = "pinned"
)

// EffectiveEgressMode is the server's egress_mode, else the default one,
// else alert.
func (s Server) EffectiveEgressMode(d Defaults) string {
	switch {
	case s.EgressMode != "":
		return s.EgressMode
	case d.EgressMode != "":
		return d.EgressMode
	}
	return EgressAlert
}

// egressMode checks an egress_mode value.
func (v *validator) egressMode(p, mode string) {
	if mode == "" && !v.c.has(p) {
		return
	}
	if mode != EgressAlert && mode != EgressPinned {
		v.fail(p, "must be alert (a new destination is egress.drifted) or pinned (also refused until approved)")
	}
}
