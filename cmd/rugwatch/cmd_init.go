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
	pubPath := filepath.Join(cfg.DataDir, signatures.PublicKeyFile)
	keyPath := a.approverKeyPath(cfg, "")
	if tokPath, err := a.tokenPath(); err == nil {
		wrote, err := writeToken(tokPath)
		if err != nil {
			return fmt.Errorf("writing the listener token: %w", err)
		}
		if wrote {
			defer fmt.Fprintf(a.Stdout, "listener token %s (0600: the bearer token http_listen and proxy_listen require)\n", tokPath)
		}
	}
	defer func() {
		for _, w := range looseModes(a.privateModes(cfg)) {
			fmt.Fprintf(a.Stderr, "warning: %s\n", w)
		}
	}()
	if _, err := os.Stat(keyPath); err == nil {
		// A key exists (this approver's, from another data dir, or an old
		// one in this data dir): this data dir trusts it.
		fresh := false
		if _, err := os.Stat(pubPath); err != nil {
			fresh = true
			s, err := signatures.LoadPrivateKey(keyPath, a.keyPassword)
			if err != nil {
				return fmt.Errorf("reading the existing approver key %s: %w", keyPath, err)
			}
			pem, err := signatures.MarshalPublicKey(s.PublicKey())
			if err != nil {
				return err
			}
			if err := os.WriteFile(pubPath, pem, 0o644); err != nil {
				return fmt.Errorf("writing %s: %w", pubPath, err)
			}
		}
		pub, err := signatures.LoadPublicKey(pubPath)
		if err != nil {
			return fmt.Errorf("data dir %s: its public key: %w", cfg.DataDir, err)
		}
		if fresh {
			fmt.Fprintf(a.Stdout, "initialised %s with your existing approver key\napprover key %s\npublic key   %s\nkey id %s\n", cfg.DataDir, keyPath, pubPath, pub.ID)
		} else {
			fmt.Fprintf(a.Stdout, "already initialised: %s\napprover key %s\nkey id %s\n", cfg.DataDir, keyPath, pub.ID)
		}
		return nil
	}
	pw, err := a.newPassword(*pwStdin)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(keyPath), 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", filepath.Dir(keyPath), err)
	}
	id, err := signatures.WriteKeyPair(keyPath, pubPath, pw)
	if err != nil {
		return fmt.Errorf("generating approver key: %w", err)
	}
	fmt.Fprintf(a.Stdout, "initialised %s\napprover key %s (private, 0600; outside the data dir)\npublic key   %s\nkey id %s\n",
		cfg.DataDir, keyPath, pubPath, id)
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
