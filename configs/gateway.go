package configs

import "fmt"

// Gateway configures the gateway: `rugwatch proxy --all` and /mcp on
// proxy_listen, one endpoint serving the approved tools of many servers.
type Gateway struct {
	// Servers are the configured servers the gateway serves, in order;
	// empty: every configured server.
	Servers []string `yaml:"servers"`
	// Exclude are servers left out of the gateway (of Servers, or of
	// every configured server).
	Exclude []string `yaml:"exclude"`
	// Names is how tool and prompt names reach the client: plain
	// (default: as the server names them; a name two servers serve is
	// served by neither) or prefixed ("<server>__<tool>").
	Names string `yaml:"names"`
}

// Gateway names policies.
const (
	GatewayNamesPlain    = "plain"
	GatewayNamesPrefixed = "prefixed"
)

// GatewayServers is the servers the gateway serves, in config order for
// an empty gateway.servers, else in its order.
func (c *Config) GatewayServers() []Server {
	excluded := map[string]bool{}
	for _, n := range c.Gateway.Exclude {
		excluded[n] = true
	}
	var out []Server
	if len(c.Gateway.Servers) == 0 {
		for _, s := range c.Servers {
			if !excluded[s.Name] {
				out = append(out, s)
			}
		}
		return out
	}
	for _, n := range c.Gateway.Servers {
		if s, ok := c.Server(n); ok && !excluded[n] {
			out = append(out, s)
		}
	}
	return out
}

// validateGateway checks gateway: every server it names is configured,
// once, and names is a known policy.
func (v *validator) validateGateway(c *Config) {
	switch c.Gateway.Names {
	case "", GatewayNamesPlain, GatewayNamesPrefixed:
	default:
		v.fail("gateway.names", "must be plain or prefixed, not %q", c.Gateway.Names)
	}
	for _, key := range []string{"servers", "exclude"} {
		names := c.Gateway.Servers
		if key == "exclude" {
			names = c.Gateway.Exclude
		}
		seen := map[string]bool{}
		for i, n := range names {
			p := fmt.Sprintf("gateway.%s[%d]", key, i)
			if _, ok := c.Server(n); !ok {
				v.fail(p, "no server %q is configured (servers[].name)", n)
			}
			if seen[n] {
				v.fail(p, "%q is listed twice", n)
			}
			seen[n] = true
		}
	}
}
