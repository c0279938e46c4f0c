package control

import (
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestListenControlRefusesWhatItMustNotReplace(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	path := filepath.Join(dir, "rugwatch.sock")

	// A fresh socket: 0600 in a 0700 directory.
	ln, err := Listen(path, Peers{}, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	di, _ := os.Stat(dir)
	if fi.Mode().Perm() != 0o600 || di.Mode().Perm() != 0o700 {
		t.Errorf("socket %v, dir %v; want 0600 and 0700", fi.Mode().Perm(), di.Mode().Perm())
	}
	// A live socket: another serve answers there.
	if _, err := Listen(path, Peers{}, slog.Default()); err == nil || !strings.Contains(err.Error(), "another rugwatch serve") {
		t.Errorf("second listen: %v", err)
	}
	// A stale socket, left by a crash, is replaced.
	ln.(*peerListener).Listener.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	ln, err = Listen(path, Peers{}, slog.Default())
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	ln.Close()
	// Anything else at the path is refused.
	if err := os.WriteFile(path, []byte("not a socket"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(path, Peers{}, slog.Default()); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("regular file at the socket path: %v", err)
	}
}
