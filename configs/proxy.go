package configs

// Proxy configures `rugwatch proxy` and serve's proxy_listen.
type Proxy struct {
	// Results says what happens to a tool result with a critical poisoning
	// finding: flag (default: a result.flagged event, the result passes)
	// or block (the event, and the client gets an error instead), or
	// redact (the event, and secrets in the result masked).
	Results string `yaml:"results"`
	// Token, when set, is a bearer token (a reference, e.g.
	// "${env:RUGWATCH_PROXY_TOKEN}") every request to proxy_listen must
	// carry; required for a non-loopback proxy_listen.
	Token Secret `yaml:"token"`
	// Origins are extra Origin header values proxy_listen accepts besides
	// its own loopback ones (browser-based clients).
	Origins []string `yaml:"origins"`
	// MaxSessionsPerClient bounds the sessions one client (address, and
	// bearer once checked) holds open on proxy_listen; default 16.
	MaxSessionsPerClient int `yaml:"max_sessions_per_client"`
	// MaxStaleness is how long a proxy on a shared (PostgreSQL) store
	// serves the approved set it last confirmed: past it, with the
	// database unreachable, it serves no tools until it can read them
	// again. Default 5s.
	MaxStaleness Duration `yaml:"max_staleness"`
}

// validateProxy checks proxy and proxy_listen.
func (v *validator) validateProxy(c *Config) {
	switch c.Proxy.Results {
	case "", "flag", "block", "redact":
	default:
		v.fail("proxy.results", "must be flag, block or redact, not %q", c.Proxy.Results)
	}
	if c.Proxy.MaxSessionsPerClient < 0 || (c.Proxy.MaxSessionsPerClient == 0 && v.c.has("proxy.max_sessions_per_client")) {
		v.fail("proxy.max_sessions_per_client", "must be greater than 0")
	}
	if c.ProxyListen == "" {
		return
	}
	if err := checkHostPort(c.ProxyListen); err != nil {
		v.fail("proxy_listen", "%v", err)
		return
	}
	if err := checkListen(c.ProxyListen); err != nil && c.Proxy.Token.IsZero() {
		v.fail("proxy_listen", "a non-loopback listener needs proxy.token (a bearer token reference such as \"${env:RUGWATCH_PROXY_TOKEN}\")")
	}
	if !c.Proxy.Token.IsZero() && len(c.Proxy.Token.references()) == 0 {
		v.fail("proxy.token", "must be a reference (${env:NAME} or ${file:PATH}), not a literal secret")
	}
}
