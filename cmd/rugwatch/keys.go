package main

import (
	"errors"
	"fmt"
	"path/filepath"

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

// approverKeyPath is --key, else $RUGWATCH_KEY, else <data_dir>/approver.key.
func (a *App) approverKeyPath(cfg *configs.Config, flagKey string) string {
	if flagKey != "" {
		return flagKey
	}
	if v, ok := a.LookupEnv("RUGWATCH_KEY"); ok && v != "" {
		return v
	}
	return filepath.Join(cfg.DataDir, "approver.key")
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
