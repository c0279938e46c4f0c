package store

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// bbolt's flock belongs to the open file description, so a second handle in
// the same process conflicts just as another process would.
func TestSecondOpenIsLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rugwatch.db")
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	for _, ro := range []bool{false, true} {
		t.Run(fmt.Sprintf("readonly=%v", ro), func(t *testing.T) {
			const timeout = 200 * time.Millisecond
			start := time.Now()
			db2, err := Open(path, Options{Timeout: timeout, ReadOnly: ro})
			elapsed := time.Since(start)
			if err == nil {
				db2.Close()
				t.Fatal("second Open succeeded")
			}
			if !errors.Is(err, ErrLocked) {
				t.Fatalf("second Open: %v, want ErrLocked", err)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name %s", err, path)
			}
			// That it returned at all shows the wait is bounded; how long
			// it took is logged, not asserted (a loaded CI machine).
			t.Logf("gave up after %v (timeout %v)", elapsed, timeout)
		})
	}

	// The default timeout applies when none is set.
	start := time.Now()
	if _, err := Open(path, Options{}); !errors.Is(err, ErrLocked) {
		t.Fatalf("Open with default timeout: %v", err)
	}
	t.Logf("default timeout: gave up after %v", time.Since(start))

	// Once the holder closes, the file opens again.
	db.Close()
	db3, err := Open(path, Options{Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	db3.Close()
}

const lockChildEnv = "RUGWATCH_STORE_LOCK_CHILD"

// TestLockedAcrossProcesses re-executes the test binary as a second process
// that tries to open a store this process holds.
func TestLockedAcrossProcesses(t *testing.T) {
	if path := os.Getenv(lockChildEnv); path != "" {
		const timeout = 300 * time.Millisecond
		start := time.Now()
		db, err := Open(path, Options{Timeout: timeout})
		elapsed := time.Since(start)
		if err == nil {
			db.Close()
			t.Fatal("child: Open succeeded while the parent holds the store")
		}
		if !errors.Is(err, ErrLocked) {
			t.Fatalf("child: Open: %v, want ErrLocked", err)
		}
		fmt.Printf("CHILD-LOCKED %v: %v\n", elapsed.Round(time.Millisecond), err)
		return
	}
	if testing.Short() {
		t.Skip("re-exec test skipped in -short mode")
	}

	path := filepath.Join(t.TempDir(), "rugwatch.db")
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	cmd := exec.Command(os.Args[0], "-test.run=^TestLockedAcrossProcesses$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), lockChildEnv+"="+path)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child failed: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "CHILD-LOCKED") {
		t.Fatalf("child did not report the lock:\n%s", out)
	}
	t.Logf("%s", strings.TrimSpace(strings.SplitN(string(out[strings.Index(string(out), "CHILD-LOCKED"):]), "\n", 2)[0]))
}
