package mcpclient

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rugwatch/rugwatch/sandbox"
)

// The npx cache fixture is the layout npx 11 wrote on this machine for
// `npx -y @modelcontextprotocol/server-everything` (the lockfile cut to
// the package and one dependency).
const (
	fixtureSpec      = "@modelcontextprotocol/server-everything"
	fixtureVersion   = "2026.8.31"
	fixtureIntegrity = "sha512-5U3OZh8Xq0Li4nA26l6uNvV9/1suMDuWSn+NjLZIhzinhMY6N3A4DCrxVecBGPf2PsNFKTEv5krxGPRwzxc7jQ=="
	otherIntegrity   = "sha512-AAAAh8Xq0Li4nA26l6uNvV9/1suMDuWSn+NjLZIhzinhMY6N3A4DCrxVecBGPf2PsNFKTEv5krxGPRwzxc7jQ=="
)

// An npx server that installs into the private HOME a sandbox gives it:
// with RUGWATCH_TEST_NPX_FIXTURE set, the re-executed test binary copies
// the fixture cache into $HOME/.npm before serving, as npx would have.
// Only a HOME of /tmp/home (the sandbox's own tmpfs) is written.
func init() {
	src := os.Getenv("RUGWATCH_TEST_NPX_FIXTURE")
	if src == "" || os.Getenv("RUGWATCH_TEST_SERVER") == "" || os.Getenv("HOME") != "/tmp/home" {
		return
	}
	_ = copyTree(src, "/tmp/home/.npm")
}

func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(to, b, 0o644)
	})
}

func TestNpxDirHash(t *testing.T) {
	// The directory npx 11 made for the spec on this machine.
	if got := npxDirHash(fixtureSpec); got != "5b2dd62b9d0bddd4" {
		t.Fatalf("npxDirHash = %s", got)
	}
}

func TestNpxResolvedFixture(t *testing.T) {
	v, i, err := npxResolved([]string{filepath.Join(t.TempDir(), "absent"), "testdata/npx-cache"}, fixtureSpec, fixtureSpec)
	if err != nil || v != fixtureVersion || i != fixtureIntegrity {
		t.Fatalf("npxResolved = %q %q %v", v, i, err)
	}
	// The hidden lockfile npm writes on install wins over package-lock.json.
	dir := t.TempDir()
	if err := copyTree("testdata/npx-cache", dir); err != nil {
		t.Fatal(err)
	}
	hidden := filepath.Join(dir, "_npx", npxDirHash(fixtureSpec), "node_modules", ".package-lock.json")
	if err := os.MkdirAll(filepath.Dir(hidden), 0o755); err != nil {
		t.Fatal(err)
	}
	lock := `{"packages":{"node_modules/` + fixtureSpec + `":{"version":"9.9.9","integrity":"` + otherIntegrity + `"}}}`
	if err := os.WriteFile(hidden, []byte(lock), 0o644); err != nil {
		t.Fatal(err)
	}
	if v, i, err := npxResolved([]string{dir}, fixtureSpec, fixtureSpec); err != nil || v != "9.9.9" || i != otherIntegrity {
		t.Fatalf("hidden lockfile: %q %q %v", v, i, err)
	}
	// Another spec installs elsewhere: nothing found is an error, not a guess.
	if _, _, err := npxResolved([]string{"testdata/npx-cache"}, fixtureSpec+"@latest", fixtureSpec); err == nil {
		t.Fatal("found an install for a spec npx never installed")
	}
	// An oversized lockfile is refused (the running package can write it).
	big := filepath.Join(t.TempDir(), "_npx", npxDirHash("x"))
	if err := os.MkdirAll(big, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(big, "package-lock.json"), make([]byte, maxLockfileBytes+1), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := npxResolved([]string{filepath.Dir(filepath.Dir(big))}, "x", "x"); err == nil || !strings.Contains(err.Error(), "over") {
		t.Fatalf("oversized lockfile: %v", err)
	}
}

// npxFixture lays out a fake npx (the test binary, serving one tool) and
// a HOME whose npm cache holds the fixture install, where a root daemon's
// sandboxed nobody can reach both.
func npxFixture(t *testing.T) (npx, home, cache string) {
	t.Helper()
	dir := outsideTmp(t)
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	self := reachableSelf(t, bin)
	npx = filepath.Join(bin, "npx")
	if err := os.Rename(self, npx); err != nil {
		t.Fatal(err)
	}
	home = filepath.Join(dir, "home")
	cache = filepath.Join(dir, "cache")
	for _, d := range []string{filepath.Join(home, ".npm"), cache} {
		if err := copyTree("testdata/npx-cache", d); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(home, 0o755); err != nil {
		t.Fatal(err)
	}
	return npx, home, cache
}

func pollNpx(t *testing.T, npx string, env map[string]string, mode sandbox.Mode, integrity string) (*Listing, error) {
	t.Helper()
	env["RUGWATCH_TEST_SERVER"] = "sdk"
	env["TOOLS"] = "1"
	target := Target{Name: "npx", Transport: TransportStdio, Command: npx, Args: []string{"-test.run=^$", "-y", fixtureSpec},
		Env: env, Sandbox: Sandbox{Mode: mode, Home: env["HOME"]}, Integrity: integrity}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return Poll(ctx, target, DialOptions{})
}

// The resolved version and integrity join the launch identity, and a
// configured integrity refuses a different artifact. The attack: the
// cache holds another artifact for the same spec (the registry served a
// new one); without integrity: the poll takes it, with it the poll fails.
func TestPollRecordsNpxIntegrity(t *testing.T) {
	npx, home, _ := npxFixture(t)
	for _, mode := range []sandbox.Mode{sandbox.Auto, sandbox.Off} {
		t.Run(string(mode), func(t *testing.T) {
			l, err := pollNpx(t, npx, map[string]string{"HOME": home}, mode, "")
			if err != nil {
				t.Fatal(err)
			}
			if l.Launch == nil || l.Launch.PackageInfo == nil || l.Launch.PackageVersion != fixtureVersion || l.Launch.Integrity != fixtureIntegrity {
				t.Fatalf("launch %+v (sandboxed %v, warnings %v)", l.Launch, l.Sandboxed, l.Warnings)
			}
			if _, err := pollNpx(t, npx, map[string]string{"HOME": home}, mode, fixtureIntegrity); err != nil {
				t.Fatalf("the pinned artifact is refused: %v", err)
			}
			_, err = pollNpx(t, npx, map[string]string{"HOME": home}, mode, otherIntegrity)
			if err == nil || !strings.Contains(err.Error(), "a different artifact would run") {
				t.Fatalf("a different artifact: %v", err)
			}
		})
	}
	// The swapped artifact without a pin: it runs and is only recorded.
	lock := filepath.Join(home, ".npm", "_npx", npxDirHash(fixtureSpec), "package-lock.json")
	b, err := os.ReadFile(lock)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(lock, []byte(strings.ReplaceAll(string(b), fixtureIntegrity, otherIntegrity)), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := pollNpx(t, npx, map[string]string{"HOME": home}, sandbox.Auto, "")
	if err != nil || l.Launch.Integrity != otherIntegrity {
		t.Fatalf("unpinned swap: %v %+v", err, l)
	}
	if _, err := pollNpx(t, npx, map[string]string{"HOME": home}, sandbox.Auto, fixtureIntegrity); err == nil {
		t.Fatal("the swapped artifact passed its pin")
	}
	// No install to confirm it by is a refusal too, not a pass.
	if _, err := pollNpx(t, npx, map[string]string{"HOME": t.TempDir()}, sandbox.Off, fixtureIntegrity); err == nil || !strings.Contains(err.Error(), "cannot be confirmed") {
		t.Fatalf("no install: %v", err)
	}
}

// A sandboxed server without a persistent HOME installs into a fresh one
// that is gone with the poll: its artifact cannot be confirmed, which is a
// warning, never a pass, and a refusal where an integrity is pinned.
func TestPollWithoutPersistentHomeCannotConfirm(t *testing.T) {
	npx, _, cache := npxFixture(t)
	env := map[string]string{"RUGWATCH_TEST_NPX_FIXTURE": cache}
	l, err := pollNpx(t, npx, env, sandbox.Auto, "")
	if err != nil {
		t.Fatal(err)
	}
	if !l.Sandboxed {
		t.Skip("the sandbox is unavailable here:", l.SandboxNote)
	}
	if l.Launch.Integrity != "" || !slices.ContainsFunc(l.Warnings, func(w string) bool { return strings.Contains(w, "package integrity") }) {
		t.Fatalf("launch %+v, warnings %v", l.Launch, l.Warnings)
	}
	if _, err := pollNpx(t, npx, map[string]string{"RUGWATCH_TEST_NPX_FIXTURE": cache}, sandbox.Auto, fixtureIntegrity); err == nil || !strings.Contains(err.Error(), "cannot be confirmed") {
		t.Fatalf("a pinned integrity without a readable install: %v", err)
	}
}
