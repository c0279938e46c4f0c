package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/rugwatch/rugwatch/signatures"
)

// runKeys manages approver keys: generate, list, export.
func (a *App) runKeys(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usagef("rugwatch keys generate [--dir DIR] | list | export [--key FILE]")
	}
	sub, args := args[0], args[1:]
	fs := a.newFlags("keys " + sub)
	switch sub {
	case "generate":
		dir := fs.String("dir", "", "write approver.key and approver.pub here (default: approver.key in $XDG_CONFIG_HOME/rugwatch or ~/.config/rugwatch, approver.pub in the data dir)")
		pwStdin := fs.Bool("password-stdin", false, "read the key passphrase from stdin")
		if _, err := parse(fs, args); err != nil {
			return err
		}
		privPath, pubPath := filepath.Join(*dir, signatures.PrivateKeyFile), filepath.Join(*dir, signatures.PublicKeyFile)
		if *dir == "" {
			cfg, err := a.config()
			if err != nil {
				return fmt.Errorf("%w (or pass --dir)", err)
			}
			kd, err := a.keyDir()
			if err != nil {
				return fmt.Errorf("%w (or pass --dir)", err)
			}
			privPath, pubPath = filepath.Join(kd, signatures.PrivateKeyFile), filepath.Join(cfg.DataDir, signatures.PublicKeyFile)
		}
		for _, d := range []string{filepath.Dir(privPath), filepath.Dir(pubPath)} {
			if err := os.MkdirAll(d, 0o700); err != nil {
				return fmt.Errorf("creating %s: %w", d, err)
			}
		}
		pw, err := a.newPassword(*pwStdin)
		if err != nil {
			return err
		}
		id, err := signatures.WriteKeyPair(privPath, pubPath, pw)
		if err != nil {
			return err
		}
		fmt.Fprintf(a.Stdout, "wrote %s and %s\nkey id %s\nadd the .pub file to trusted_keys for its approvals to count\n", privPath, pubPath, id)
		return nil
	case "list":
		if _, err := parse(fs, args); err != nil {
			return err
		}
		cfg, err := a.config()
		if err != nil {
			return err
		}
		for _, p := range cfg.TrustedKeys {
			k, err := signatures.LoadPublicKey(p)
			if err != nil {
				fmt.Fprintf(a.Stdout, "%s\tUNREADABLE: %v\n", p, err)
				continue
			}
			fmt.Fprintf(a.Stdout, "%s\t%s\n", k.ID, p)
		}
		return nil
	case "export":
		key := fs.String("key", "", "approver private key")
		if _, err := parse(fs, args); err != nil {
			return err
		}
		cfg, err := a.config()
		if err != nil && *key == "" {
			return err
		}
		s, err := signatures.LoadPrivateKey(a.approverKeyPath(cfg, *key), a.keyPassword)
		if err != nil {
			return err
		}
		pem, err := signatures.MarshalPublicKey(s.PublicKey())
		if err != nil {
			return err
		}
		_, err = a.Stdout.Write(pem)
		return err
	}
	return usagef("unknown keys command %q: want generate, list or export", sub)
}
