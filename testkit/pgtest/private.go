package pgtest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// Cluster is a PostgreSQL server of one test's own, which the test may
// stop, start, freeze and thaw to see what its clients do when the
// database goes away or stops answering. Private returns one.
type Cluster struct {
	t   testing.TB
	c   *cluster
	dsn string

	mu     sync.Mutex
	frozen []int // the processes Freeze stopped
}

// Private starts a cluster for this test alone, even when
// RUGWATCH_TEST_PG names a shared server (a test must not stop that
// one), with one empty database, and removes it when the test ends. It
// skips the test where PostgreSQL is not installed, and fails it in CI.
func Private(t testing.TB) *Cluster {
	t.Helper()
	bin, ok := findBinaries()
	if !ok {
		const missing = "PostgreSQL not installed (apt-get install postgresql), and this test needs a server of its own to stop"
		if os.Getenv("CI") != "" {
			t.Fatal(missing + ", and CI must not skip database tests")
		}
		t.Skip(missing + "; skipping")
	}
	c, err := startCluster(bin)
	if err != nil {
		t.Fatal(err)
	}
	p := &Cluster{t: t, c: c}
	t.Cleanup(func() {
		p.Thaw() // a stopped process would hold up pg_ctl stop
		if err := c.stop(); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	const db = "rugwatch"
	if err := adminExec(c.dsn, "CREATE DATABASE "+db); err != nil {
		t.Fatalf("creating the database in the private cluster: %v", err)
	}
	if p.dsn, err = withDatabase(c.dsn, db); err != nil {
		t.Fatal(err)
	}
	return p
}

// DSN is the postgres:// URL of the cluster's database.
func (p *Cluster) DSN() string { return p.dsn }

// Stop stops the server at once (pg_ctl stop -m immediate): every
// connection is cut and new ones are refused until Start.
func (p *Cluster) Stop() {
	p.t.Helper()
	if out, err := p.c.run("pg_ctl", "stop", "-w", "-m", "immediate", "-D", p.c.data()); err != nil {
		p.t.Fatalf("pg_ctl stop: %v\n%s", err, out)
	}
}

// Start starts the stopped server again, on the same socket, with the
// same data; it returns once the server accepts connections.
func (p *Cluster) Start() {
	p.t.Helper()
	if err := p.c.serve(); err != nil {
		p.t.Fatal(err)
	}
}

// Freeze stops (SIGSTOP) the server and every process it started: the
// connections stay open and new ones are accepted by the kernel, but
// nothing answers, the way a database behind a dead network path or a
// stalled disk behaves. Thaw resumes them.
func (p *Cluster) Freeze() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	b, err := os.ReadFile(filepath.Join(p.c.data(), "postmaster.pid"))
	if err != nil {
		p.t.Fatalf("freezing PostgreSQL: %v", err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pm, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil {
		p.t.Fatalf("freezing PostgreSQL: postmaster.pid: %q", first)
	}
	// The postmaster first, so it forks no process the scan misses.
	pids := []int{pm}
	if err := syscall.Kill(pm, syscall.SIGSTOP); err != nil {
		p.t.Fatalf("freezing PostgreSQL: %v", err)
	}
	p.frozen = pids
	for _, pid := range childrenOf(pm) {
		if err := syscall.Kill(pid, syscall.SIGSTOP); err == nil {
			p.frozen = append(p.frozen, pid)
		}
	}
}

// Thaw resumes what Freeze stopped.
func (p *Cluster) Thaw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pid := range p.frozen {
		_ = syscall.Kill(pid, syscall.SIGCONT)
	}
	p.frozen = nil
}

// childrenOf lists the processes whose parent is pid, from /proc.
func childrenOf(pid int) []int {
	dirs, _ := filepath.Glob("/proc/[0-9]*/stat")
	var out []int
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil {
			continue
		}
		// pid (comm) state ppid …; comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 || f[1] != strconv.Itoa(pid) {
			continue
		}
		child, err := strconv.Atoi(filepath.Base(filepath.Dir(d)))
		if err == nil {
			out = append(out, child)
		}
	}
	return out
}

// String names the cluster's directory, for messages.
func (p *Cluster) String() string { return fmt.Sprintf("private PostgreSQL in %s", p.c.dir) }
