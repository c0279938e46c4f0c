package main

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/rugwatch/rugwatch/configs"
)

// tokenFileName is the listeners' bearer token beside the approver key:
// 0600, outside the data dir, written by init.
const tokenFileName = "token"

// tokenPath is where init writes the listeners' token.
func (a *App) tokenPath() (string, error) {
	dir, err := a.keyDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, tokenFileName), nil
}

// writeToken creates a random token at path unless one is there, and
// reports whether it wrote one.
func writeToken(path string) (bool, error) {
	if _, err := os.Stat(path); err == nil {
		return false, nil
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return false, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return false, err
	}
	if _, err := f.WriteString(base64.RawURLEncoding.EncodeToString(b[:]) + "\n"); err != nil {
		f.Close()
		return false, err
	}
	return true, f.Close()
}

// listenerToken returns how one listener resolves its bearer token at each
// request: its configured reference, else the file init wrote. Every
// listener that can act or reveal requires one, on loopback too: any local
// process, and any page a browser opens, can reach loopback.
func (a *App) listenerToken(configured configs.Secret, key, file string) func() (string, error) {
	return func() (string, error) {
		if !configured.IsZero() {
			return configured.Resolve(a.resolver())
		}
		b, err := os.ReadFile(file)
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("%s is not set and %s does not exist: run `rugwatch init`, which writes it", key, file)
		}
		if err != nil {
			return "", fmt.Errorf("reading the listener token %s: %w", file, err)
		}
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return "", fmt.Errorf("the listener token %s is empty", file)
		}
		return tok, nil
	}
}
