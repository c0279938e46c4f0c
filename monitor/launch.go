package monitor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
)

// Launch is what actually ran for a stdio server: the resolved executable
// and its SHA-256, and for package runners (npx, uvx, bunx, pipx) the
// package spec, plus the name and version the server reported. An upgrade
// that swaps the code behind an unchanged command line changes it, even
// when no tool text changes.
type Launch struct {
	Executable    string `json:"executable"`
	SHA256        string `json:"sha256"`
	Package       string `json:"package,omitempty"`
	ServerName    string `json:"server_name,omitempty"`
	ServerVersion string `json:"server_version,omitempty"`
	// ProtocolVersion is the revision negotiated with it.
	ProtocolVersion string `json:"protocol_version,omitempty"`
	// PackageInfo is what a package runner resolved, and the package's
	// findings (see packages.go); nil for other commands.
	*PackageInfo
}

// HashCache remembers executables' digests by path, device, inode, size
// and mtime, so a daemon does not re-read a 100 MB node binary on every
// poll (1–10 s under load, past a poll's timeout). The device is part of
// the key because an inode number is only unique on its own filesystem.
type HashCache struct {
	mu sync.Mutex
	m  map[string]hashEntry
}

type hashEntry struct {
	size, mtime int64
	dev, ino    uint64
	sum         string
}

// sum hashes the file at path, or returns the digest cached for the same
// file. ctx bounds the read: a poll's deadline covers hashing what it ran
// (a 99 MB node binary read under load would otherwise outlast it), and a
// cut read caches nothing.
func (c *HashCache) sum(ctx context.Context, path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	var dev, ino uint64
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		dev, ino = uint64(st.Dev), st.Ino
	}
	key := hashEntry{size: fi.Size(), mtime: fi.ModTime().UnixNano(), dev: dev, ino: ino}
	if c != nil {
		c.mu.Lock()
		e, ok := c.m[path]
		c.mu.Unlock()
		if ok && e.size == key.size && e.mtime == key.mtime && e.dev == key.dev && e.ino == key.ino {
			return e.sum, nil
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, ctxReader{ctx, f}, make([]byte, 1<<20)); err != nil {
		return "", err
	}
	key.sum = hex.EncodeToString(h.Sum(nil))
	if c != nil {
		c.mu.Lock()
		if c.m == nil {
			c.m = map[string]hashEntry{}
		}
		c.m[path] = key
		c.mu.Unlock()
	}
	return key.sum, nil
}

// ctxReader stops reading once ctx is done, between reads of at most
// the copy buffer's size.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// launchOf describes what ran for a stdio target, within ctx.
func launchOf(ctx context.Context, t Target, cache *HashCache, serverInfo json.RawMessage) (*Launch, error) {
	path, err := lookPath(t.Command, t.Env)
	if err != nil {
		return nil, err
	}
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	}
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	sum, err := cache.sum(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("hashing %s: %w", path, err)
	}
	l := &Launch{Executable: path, SHA256: sum, Package: packageSpec(t.Command, t.Args), PackageInfo: packageInfoOf(t)}
	var info struct{ Name, Version string }
	if json.Unmarshal(serverInfo, &info) == nil {
		l.ServerName, l.ServerVersion = info.Name, info.Version
	}
	return l, nil
}

// packageSpec finds the package a runner was asked to run: the first
// argument that is not a flag, or the value of --package/-p/--from/--spec.
func packageSpec(command string, args []string) string {
	runner := filepath.Base(command)
	switch runner {
	case "npx", "uvx", "bunx", "pipx", "pnpx":
	default:
		return ""
	}
	if runner == "pipx" && len(args) > 0 && args[0] == "run" {
		args = args[1:]
	}
	valueFlags := map[string]bool{"--package": true, "-p": true, "--from": true, "--spec": true, "--python": true, "--with": true, "--registry": true, "--cache": true}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if k, v, ok := strings.Cut(a, "="); ok && (k == "--package" || k == "--from" || k == "--spec") {
			return v
		}
		if valueFlags[a] {
			if (a == "--package" || a == "-p" || a == "--from" || a == "--spec") && i+1 < len(args) {
				return args[i+1]
			}
			i++
			continue
		}
		if strings.HasPrefix(a, "-") {
			continue
		}
		return a
	}
	return ""
}
