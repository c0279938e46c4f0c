package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/rugwatch/rugwatch/configs"
	"github.com/rugwatch/rugwatch/signatures"
)

// keyPassword supplies the passphrase of an encrypted approver key from
// $RUGWATCH_KEY_PASSWORD; rugwatch never stores it.
func (a *App) keyPassword() ([]byte, error) {
	if v, ok := a.LookupEnv("RUGWATCH_KEY_PASSWORD"); ok && v != "" {
		return []byte(v), nil
	}
	return nil, errors.New("the approver key is encrypted: set RUGWATCH_KEY_PASSWORD")
}

// keyDir is where `init` keeps the approver's private key: under
// $XDG_CONFIG_HOME/rugwatch, else ~/.config/rugwatch — never in the data
// dir, which the daemon (and whatever it runs) can reach.
func (a *App) keyDir() (string, error) {
	if v, ok := a.LookupEnv("XDG_CONFIG_HOME"); ok && filepath.IsAbs(v) {
		return filepath.Join(v, "rugwatch"), nil
	}
	if v, ok := a.LookupEnv("HOME"); ok && v != "" {
		return filepath.Join(v, ".config", "rugwatch"), nil
	}
	return "", errors.New("neither XDG_CONFIG_HOME nor HOME is set; pass --key FILE or set RUGWATCH_KEY")
}

// approverKeyPath is --key, else $RUGWATCH_KEY, else the key dir's
// approver.key (an ephemeral run's: the data dir's); a store initialised before keys moved out of the data dir
// still has <data_dir>/approver.key, which is used with a warning.
func (a *App) approverKeyPath(cfg *configs.Config, flagKey string) string {
	if flagKey != "" {
		return flagKey
	}
	if v, ok := a.LookupEnv("RUGWATCH_KEY"); ok && v != "" {
		return v
	}
	if cfg.Ephemeral {
		// An ephemeral run trusts only the key pair it made in its data
		// dir (the demo): a key of the user's own would not count.
		return filepath.Join(cfg.DataDir, signatures.PrivateKeyFile)
	}
	legacy := filepath.Join(cfg.DataDir, signatures.PrivateKeyFile)
	dir, err := a.keyDir()
	if err == nil {
		p := filepath.Join(dir, signatures.PrivateKeyFile)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if _, err := os.Stat(legacy); err == nil {
		a.log.Warn("the approver's private key sits in the data dir, where the daemon and its servers' neighbours can reach it; move it to "+
			filepath.Join(dir, signatures.PrivateKeyFile)+" (or point --key / RUGWATCH_KEY at it)", "key", legacy)
		return legacy
	}
	if err != nil {
		return legacy
	}
	return filepath.Join(dir, signatures.PrivateKeyFile)
}

// looseModes reports files and directories rugwatch keeps private that
// are open to others: they are reported, never chmod'ed behind the
// operator's back (a wider mode may be deliberate, e.g. a group that
// shares the socket).
func looseModes(paths map[string]os.FileMode) []string {
	var out []string
	for p, want := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			continue
		}
		if got := fi.Mode().Perm(); got&^want != 0 {
			out = append(out, fmt.Sprintf("%s is mode %04o; rugwatch expects at most %04o", p, got, want))
		}
	}
	sort.Strings(out)
	return out
}

// privateModes are the paths of cfg (and the approver key) that must not
// be readable by others.
func (a *App) privateModes(cfg *configs.Config) map[string]os.FileMode {
	m := map[string]os.FileMode{
		cfg.DataDir: 0o700,
		filepath.Join(cfg.DataDir, "rugwatch.db"): 0o600,
	}
	if dir, err := a.keyDir(); err == nil {
		m[dir] = 0o700
		m[filepath.Join(dir, signatures.PrivateKeyFile)] = 0o600
	}
	if cfg.SigningKey != "" {
		m[cfg.SigningKey] = 0o600
	}
	return m
}

// loadApprover loads the approver's private key and refuses one whose
// public key is not trusted by the config: its approvals would not count.
func (a *App) loadApprover(cfg *configs.Config, flagKey string) (*signatures.Signer, error) {
	path := a.approverKeyPath(cfg, flagKey)
	s, err := signatures.LoadPrivateKey(path, a.keyPassword)
	if err != nil {
		return nil, fmt.Errorf("loading approver key: %w", err)
	}
	keys, err := signatures.LoadPublicKeys(cfg.TrustedKeys)
	if err != nil {
		return nil, fmt.Errorf("loading trusted keys: %w", err)
	}
	for _, k := range keys {
		if k.ID == s.KeyID() {
			return s, nil
		}
	}
	return nil, fmt.Errorf("approver key %s (%s) is not among trusted_keys in %s; its approvals would not count", s.KeyID(), path, cfg.Path)
}

// loadSigner loads the daemon's signing_key for approve_first_seen.
func loadSigner(path string, password func() ([]byte, error)) (*signatures.Signer, error) {
	s, err := signatures.LoadPrivateKey(path, password)
	if err != nil {
		return nil, fmt.Errorf("loading signing_key for approve_first_seen: %w", err)
	}
	return s, nil
}

// approvalPolicy is approvalPolicyOf(cfg), kept while cfg is the config
// in force.
func (a *App) approvalPolicy(cfg *configs.Config) *signatures.Policy {
	a.policyMu.Lock()
	defer a.policyMu.Unlock()
	if a.policyOf != cfg {
		a.policyOf, a.policy = cfg, approvalPolicyOf(cfg)
	}
	return a.policy
}

// approvalPolicyOf is the quorum of every server of cfg and the names and
// roles of its trusted keys. A key that does not load is left out, so a
// quorum that needed it cannot be met: the proxy withholds rather than
// serve on fewer signatures than configured.
func approvalPolicyOf(cfg *configs.Config) *signatures.Policy {
	quorum := func(a configs.Approvals) signatures.Quorum {
		return signatures.Quorum{N: a.Quorum, Roles: a.RequireRoles}
	}
	p := &signatures.Policy{Keys: map[string]signatures.KeyInfo{}, Default: quorum(cfg.Approvals), PerServer: map[string]signatures.Quorum{}}
	for _, s := range cfg.Servers {
		p.PerServer[s.Name] = quorum(s.Approvals)
	}
	info := map[string]configs.TrustedKey{}
	for _, k := range cfg.Keys {
		info[k.Path] = k
	}
	for _, path := range cfg.TrustedKeys {
		k, err := signatures.LoadPublicKey(path)
		if err != nil {
			continue
		}
		p.Keys[k.ID] = signatures.KeyInfo{Name: info[path].Name, Roles: info[path].Roles}
	}
	return p
}
