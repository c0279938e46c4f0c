package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/rugwatch/rugwatch/signatures"
)

// runInit creates the data dir, the store and an approver key pair.
func (a *App) runInit(ctx context.Context, args []string) error {
	fs := a.newFlags("init")
	pwStdin := fs.Bool("password-stdin", false, "read the key passphrase from stdin")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := a.config()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("creating data dir: %w", err)
	}
	db, err := a.openStore(cfg)
	if err != nil {
		return err
	}
	if err := db.Close(); err != nil {
		return err
	}
	keyPath := filepath.Join(cfg.DataDir, "approver.key")
	if _, err := os.Stat(keyPath); err == nil {
		pub, err := signatures.LoadPublicKey(filepath.Join(cfg.DataDir, "approver.pub"))
		if err != nil {
			return fmt.Errorf("data dir has approver.key but its public key: %w", err)
		}
		fmt.Fprintf(a.Stdout, "already initialised: %s\nkey id %s\n", cfg.DataDir, pub.ID)
		return nil
	}
	pw, err := a.newPassword(*pwStdin)
	if err != nil {
		return err
	}
	id, err := signatures.GenerateKeyPair(cfg.DataDir, pw)
	if err != nil {
		return fmt.Errorf("generating approver key: %w", err)
	}
	fmt.Fprintf(a.Stdout, "initialised %s\napprover key %s (private, 0600)\npublic key   %s\nkey id %s\n",
		cfg.DataDir, keyPath, filepath.Join(cfg.DataDir, "approver.pub"), id)
	return nil
}

// newPassword reads a passphrase for a new key: from stdin when asked,
// else $RUGWATCH_KEY_PASSWORD, else none (an unencrypted 0600 key).
func (a *App) newPassword(fromStdin bool) ([]byte, error) {
	if fromStdin {
		b, err := io.ReadAll(io.LimitReader(a.Stdin, 4096))
		if err != nil {
			return nil, fmt.Errorf("reading passphrase from stdin: %w", err)
		}
		pw := strings.TrimRight(string(b), "\r\n")
		if pw == "" {
			return nil, errors.New("--password-stdin: empty passphrase")
		}
		return []byte(pw), nil
	}
	if v, ok := a.LookupEnv("RUGWATCH_KEY_PASSWORD"); ok && v != "" {
		return []byte(v), nil
	}
	return nil, nil
}
