package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/rugwatch/rugwatch/configs"
	"github.com/rugwatch/rugwatch/signatures"
	"github.com/rugwatch/rugwatch/store"
)

// ephemeralMark is the file that says a directory is an ephemeral run's
// data dir, which the next run may empty: serve never empties a directory
// it did not make.
const ephemeralMark = ".rugwatch-ephemeral"

// ephemeral gives cfg a fresh data dir with a new key pair for this run,
// at the place every command of the config looks
// (configs.EphemeralDataDir): an earlier run's data there is removed
// first, unless a serve still runs on it.
func (d *daemon) ephemeral(cfg *configs.Config) error {
	dir := cfg.DataDir
	if err := resetEphemeral(dir); err != nil {
		return err
	}
	id, err := signatures.GenerateKeyPair(dir, nil)
	if err != nil {
		return fmt.Errorf("generating ephemeral key pair: %w", err)
	}
	cfg.TrustedKeys = []string{filepath.Join(dir, signatures.PublicKeyFile)}
	// The listeners' token too is this run's own.
	d.tokenFile = filepath.Join(dir, tokenFileName)
	if _, err := writeToken(d.tokenFile); err != nil {
		return fmt.Errorf("writing the ephemeral listener token: %w", err)
	}
	if cfg.HTTPListen != "" || cfg.ProxyListen != "" {
		d.app.log.Info("ephemeral listener token", "token_file", d.tokenFile)
	}
	if cfg.ApproveFirstSeen {
		cfg.SigningKey = filepath.Join(dir, signatures.PrivateKeyFile)
	}
	d.app.log.Info("ephemeral data dir, emptied for this run; kept after it for history and diff until the next run",
		"data_dir", dir, "key_id", id, "history", "rugwatch --config "+cfg.Path+" history")
	return nil
}

// resetEphemeral leaves dir empty but for its mark: made 0700 when
// missing, emptied when an earlier ephemeral run made it. A directory
// without the mark, or whose store a running serve holds, is refused.
func resetEphemeral(dir string) error {
	mark := filepath.Join(dir, ephemeralMark)
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("creating ephemeral data dir: %w", err)
		}
		return writeMark(mark)
	case err != nil:
		return fmt.Errorf("reading ephemeral data dir: %w", err)
	}
	if !fileExists(mark) {
		if len(entries) == 0 {
			return writeMark(mark)
		}
		return fmt.Errorf("ephemeral data dir %s holds files an ephemeral run did not make (no %s); move them away or remove the directory", dir, ephemeralMark)
	}
	// The lock says whether a serve of this config still runs: its data
	// is not ours to remove.
	if db := filepath.Join(dir, "rugwatch.db"); fileExists(db) {
		s, err := store.Open(db, store.Options{})
		switch {
		case errors.Is(err, store.ErrLocked):
			return fmt.Errorf("another `rugwatch serve` of this config runs on %s; stop it first", dir)
		case err == nil:
			s.Close()
		}
		// Any other error: the store is removed below all the same.
	}
	for _, e := range entries {
		if e.Name() == ephemeralMark {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("emptying ephemeral data dir: %w", err)
		}
	}
	return nil
}

func fileExists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

func writeMark(path string) error {
	if err := os.WriteFile(path, []byte("emptied at the start of every ephemeral `rugwatch serve` of this config\n"), 0o600); err != nil {
		return fmt.Errorf("marking the ephemeral data dir: %w", err)
	}
	return nil
}
