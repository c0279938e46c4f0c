package mcpclient

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// Hashing an executable stays inside the poll's deadline: a done context
// stops the read and caches nothing, and the next poll with time left
// hashes the file in full.
func TestHashCacheSumStopsAtDeadline(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big")
	data := make([]byte, 8<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	if err := os.WriteFile(path, data, 0o755); err != nil {
		t.Fatal(err)
	}
	var c HashCache
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.sum(ctx, path); !errors.Is(err, context.Canceled) {
		t.Fatalf("sum with a done context: err %v, want context.Canceled", err)
	}
	if len(c.m) != 0 {
		t.Fatalf("a cut hash was cached: %v", c.m)
	}
	got, err := c.sum(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(data)
	if got != hex.EncodeToString(want[:]) {
		t.Fatalf("sum %s, want %x", got, want)
	}
	if _, err := launchOf(ctx, Target{Command: path}, &c, nil); err != nil {
		t.Fatalf("a cached digest needs no read, even past the deadline: %v", err)
	}
}
