package configs

import "fmt"

// Deferred is a key a reload does not apply: it takes effect at the next
// start, and until then the running value stays in force.
type Deferred struct {
	Key, Running, New string
}

// PlanReload decides what of next a daemon running with running applies
// on a reload, and returns the config to install (next, with the keys
// that apply only at a restart set back to their running values) and
// those keys. It refuses a config that would leave a bound listener
// without the token it needs. It changes neither argument.
//
// The listeners stay bound where they started, and their guards read the
// config in force: a reload that moved http_listen to loopback and
// dropped http_token would otherwise leave the bound public listener
// open. The data directory holds the open store and the event chain;
// an ephemeral daemon's keys live in a temporary directory only it knows.
func PlanReload(running, next *Config) (*Config, []Deferred, error) {
	cfg := *next
	if running.Ephemeral || cfg.Ephemeral {
		cfg.Ephemeral, cfg.DataDir, cfg.TrustedKeys = running.Ephemeral, running.DataDir, running.TrustedKeys
		if cfg.ApproveFirstSeen {
			cfg.SigningKey = running.SigningKey
		}
	}
	var deferred []Deferred
	keep := func(key string, run string, val *string) {
		if *val != run {
			deferred = append(deferred, Deferred{Key: key, Running: run, New: *val})
			*val = run
		}
	}
	keep("data_dir", running.DataDir, &cfg.DataDir)
	keep("http_listen", running.HTTPListen, &cfg.HTTPListen)
	keep("proxy_listen", running.ProxyListen, &cfg.ProxyListen)
	if cfg.HTTPListen != "" && !cfg.HTTPLoopback() && cfg.HTTPToken.IsZero() {
		return nil, nil, fmt.Errorf("http_listen %s, still bound, is not loopback and the new config has no http_token", cfg.HTTPListen)
	}
	return &cfg, deferred, nil
}
