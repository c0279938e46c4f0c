package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rugwatch/rugwatch/configs"
)

// init writes the listeners' token once, 0600, beside the approver key and
// outside the data dir; serve refuses a listener it has no token for,
// naming what to run.
func TestInitWritesTheListenerTokenAndServeNeedsIt(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir, "data_dir: "+filepath.Join(dir, "data")+"\nproxy_listen: 127.0.0.1:0\nservers: []\n")
	env := map[string]string{"HOME": dir}
	run := func(args ...string) (int, string) {
		var out bytes.Buffer
		app := &App{Stdin: bytes.NewReader(nil), Stdout: &out, Stderr: &out, LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		return app.Run(ctx, append([]string{"--config", cfg}, args...)), out.String()
	}
	// Before init: no token, so no listener.
	if code, out := run("serve"); code != 2 || !strings.Contains(out, "proxy_listen needs a bearer token") || !strings.Contains(out, "rugwatch init") {
		t.Fatalf("serve without a token: exit %d\n%s", code, out)
	}
	code, out := run("init")
	tok := filepath.Join(dir, ".config", "rugwatch", "token")
	if code != 0 || !strings.Contains(out, "listener token "+tok) {
		t.Fatalf("init: exit %d\n%s", code, out)
	}
	fi, err := os.Stat(tok)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v", fi, err)
	}
	first, _ := os.ReadFile(tok)
	if len(strings.TrimSpace(string(first))) < 40 {
		t.Errorf("a short token: %q", first)
	}
	if strings.HasPrefix(tok, filepath.Join(dir, "data")) {
		t.Errorf("the token is in the data dir")
	}
	// A second init keeps it.
	if code, out := run("init"); code != 0 || strings.Contains(out, "listener token") {
		t.Errorf("second init: exit %d\n%s", code, out)
	}
	if again, _ := os.ReadFile(tok); !bytes.Equal(first, again) {
		t.Errorf("init replaced the token")
	}
}

// An ending proxy session does not fall back to the store, where it would
// wait on the daemon's lock: it stops at once with its context's error.
func TestProxyBackendStopsWithItsSession(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir, "data_dir: "+filepath.Join(dir, "data")+"\nservers: []\n")
	app := &App{Stdin: bytes.NewReader(nil), Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}, LookupEnv: func(k string) (string, bool) {
		if k == "HOME" {
			return dir, true
		}
		return "", false
	}}
	if code := app.Run(context.Background(), []string{"--config", cfg, "init"}); code != 0 {
		t.Fatalf("init: %d", code)
	}
	c, err := configs.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The store is held, as a running daemon holds it.
	db, err := app.openStore(c)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err = app.proxyBackend(c)(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("an ended session's backend: %v, want context.Canceled", err)
	}
	// A live context does go on to the store, and meets the lock.
	_, _, err = app.proxyBackend(c)(context.Background())
	if err == nil || errors.Is(err, context.Canceled) {
		t.Fatalf("a live session's backend with the store held: %v", err)
	}
}
