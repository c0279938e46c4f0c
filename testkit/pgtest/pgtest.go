package pgtest

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvServer names the server to create test databases on, as a
// postgres:// URL whose user may CREATE DATABASE.
const EnvServer = "RUGWATCH_TEST_PG"

// clusterPrefix starts the name of every private cluster's directory in
// os.TempDir(), so that a later binary can find and remove leftovers.
const clusterPrefix = "rugwatch-pgtest-"

// clusterUser is the superuser initdb creates in a private cluster.
const clusterUser = "rugwatch"

var (
	// inMain is set while RunMain runs the tests.
	inMain atomic.Bool

	startOnce sync.Once
	started   *cluster // nil until a private cluster is running
	startErr  error
)

// RunMain runs the tests, then stops the private cluster if DSN started
// one. Call it from TestMain: os.Exit(pgtest.RunMain(m)).
func RunMain(m *testing.M) int {
	inMain.Store(true)
	code := m.Run()
	inMain.Store(false)
	if started != nil {
		if err := started.stop(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
		started = nil
	}
	return code
}

// DSN creates a fresh, empty database for this test, drops it when the
// test ends, and returns its postgres:// URL. It skips the test when there
// is no server to use, and fails it instead when CI is set.
func DSN(t testing.TB) string {
	t.Helper()
	if !inMain.Load() {
		t.Fatal("pgtest.DSN needs the package's TestMain to be: func TestMain(m *testing.M) { os.Exit(pgtest.RunMain(m)) }")
	}
	admin, err := server()
	if errors.Is(err, errNoServer) {
		const missing = "PostgreSQL not installed (apt-get install postgresql, or set " + EnvServer + ")"
		if os.Getenv("CI") != "" {
			t.Fatal(missing + ", and CI must not skip database tests")
		}
		t.Skip(missing + "; skipping")
	}
	if err != nil {
		t.Fatal(err)
	}

	name, err := uniqueName()
	if err != nil {
		t.Fatal(err)
	}
	dsn, err := withDatabase(admin, name)
	if err != nil {
		t.Fatal(err)
	}
	if err := adminExec(admin, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("creating the test database %s: %v", name, err)
	}
	t.Cleanup(func() {
		// FORCE ends connections the test left open, which would
		// otherwise make the drop fail and the database pile up.
		if err := adminExec(admin, "DROP DATABASE "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("dropping the test database %s: %v", name, err)
		}
	})
	return dsn
}

// errNoServer is server's answer when there is nothing to run against.
var errNoServer = errors.New("no PostgreSQL server")

// server returns the admin DSN of the server to create databases on,
// starting the private cluster on first use.
func server() (string, error) {
	if dsn := os.Getenv(EnvServer); dsn != "" {
		if _, err := withDatabase(dsn, "postgres"); err != nil {
			return "", fmt.Errorf("%s: %w", EnvServer, err)
		}
		return dsn, nil
	}
	startOnce.Do(func() {
		bin, ok := findBinaries()
		if !ok {
			startErr = errNoServer
			return
		}
		started, startErr = startCluster(bin)
	})
	if startErr != nil {
		return "", startErr
	}
	return started.dsn, nil
}

// uniqueName is a database name no other test, binary or earlier run on
// the same server holds: the pid alone repeats across runs, so add
// randomness.
func uniqueName() (string, error) {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("choosing a database name: %w", err)
	}
	return fmt.Sprintf("rugwatch_test_%d_%s", os.Getpid(), hex.EncodeToString(b)), nil
}

// withDatabase is dsn, a postgres:// URL, naming database db instead.
func withDatabase(dsn, db string) (string, error) {
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", fmt.Errorf("want a postgres:// URL, got %q", dsn)
	}
	q := u.Query()
	if q.Has("dbname") {
		q.Del("dbname")
		u.RawQuery = q.Encode()
	}
	u.Path = "/" + db
	u.RawPath = ""
	return u.String(), nil
}

// adminExec runs one statement on its own connection: a *pgx.Conn is not
// safe for concurrent use, and parallel tests create databases at once.
func adminExec(dsn, sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("connecting to the admin database: %w", err)
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

// findBinaries returns the directory holding initdb, pg_ctl and postgres:
// initdb's on PATH, else the newest /usr/lib/postgresql/<version>/bin.
func findBinaries() (string, bool) {
	if p, err := exec.LookPath("initdb"); err == nil {
		// Resolve a symlink such as /usr/local/bin/initdb, so pg_ctl
		// comes from the same installation.
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		dir := filepath.Dir(p)
		if isFile(filepath.Join(dir, "pg_ctl")) {
			return dir, true
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	version := func(dir string) float64 {
		v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(dir)), 64)
		return v
	}
	slices.SortFunc(dirs, func(a, b string) int {
		return cmp.Compare(version(b), version(a)) // newest first
	})
	for _, dir := range dirs {
		if isFile(filepath.Join(dir, "initdb")) && isFile(filepath.Join(dir, "pg_ctl")) {
			return dir, true
		}
	}
	return "", false
}

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir()
}

// cluster is a private PostgreSQL cluster: data, log and Unix socket in
// dir, which nothing else uses.
type cluster struct {
	bin  string
	dir  string
	dsn  string
	cred *syscall.Credential // whom to run initdb and pg_ctl as; nil: us
}

func (c *cluster) data() string { return filepath.Join(c.dir, "data") }
func (c *cluster) log() string  { return filepath.Join(c.dir, "log") }

// startCluster initdbs and starts a cluster in a new directory, first
// removing clusters that binaries which died early left behind.
func startCluster(bin string) (*cluster, error) {
	cred, err := clusterCredential()
	if err != nil {
		return nil, err
	}
	reapLeftovers(bin, cred)

	// The socket's path, <parent>/rugwatch-pgtest-<digits>/.s.PGSQL.5432,
	// must fit in sun_path (108 bytes on Linux; under 100 to be safe
	// elsewhere), which a long TMPDIR would not leave room for.
	parent := os.TempDir()
	if len(parent)+len("/"+clusterPrefix+"0123456789/.s.PGSQL.5432") >= 100 {
		parent = "/tmp"
	}
	dir, err := os.MkdirTemp(parent, clusterPrefix)
	if err != nil {
		return nil, fmt.Errorf("making the PostgreSQL cluster's directory: %w", err)
	}
	if strings.ContainsAny(dir, "'\\") {
		// pg_ctl -o goes through a shell; -k below quotes dir.
		os.RemoveAll(dir)
		return nil, fmt.Errorf("PostgreSQL cluster directory %q has a quote or backslash in it", dir)
	}
	c := &cluster{bin: bin, dir: dir, cred: cred}
	if err := c.start(); err != nil {
		c.stop()
		return nil, err
	}
	c.dsn = (&url.URL{
		Scheme:   "postgres",
		User:     url.User(clusterUser),
		Path:     "/postgres",
		RawQuery: url.Values{"host": {dir}}.Encode(),
	}).String()
	return c, nil
}

func (c *cluster) start() error {
	// The owner file says which binary the cluster belongs to, so that
	// reapLeftovers removes it only once that binary is gone.
	if err := os.WriteFile(filepath.Join(c.dir, "owner"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return fmt.Errorf("writing the PostgreSQL cluster's owner file: %w", err)
	}
	if c.cred != nil {
		if err := os.Chown(c.dir, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			return fmt.Errorf("giving the PostgreSQL cluster's directory to the postgres user: %w", err)
		}
	}
	// Trust auth is safe: the only way in is the socket in c.dir, which
	// only its owner (and root) may enter. C locale and UTF8: the same
	// collation on every machine.
	if out, err := c.run("initdb", "-D", c.data(), "-A", "trust", "-U", clusterUser,
		"-E", "UTF8", "--locale=C", "--no-sync"); err != nil {
		return fmt.Errorf("initdb: %w\n%s", err, out)
	}
	return c.serve()
}

// serve starts the server of an initialised cluster.
func (c *cluster) serve() error {
	// -w waits until the server accepts connections, so no sleep.
	// fsync=off: a crash loses nothing a test needs.
	opts := "-k '" + c.dir + "' -c listen_addresses='' -c fsync=off -c max_connections=200"
	if out, err := c.run("pg_ctl", "start", "-w", "-t", "120", "-D", c.data(), "-l", c.log(), "-o", opts); err != nil {
		logs, _ := os.ReadFile(c.log())
		return fmt.Errorf("pg_ctl start: %w\n%s\nserver log:\n%s", err, out, logs)
	}
	return nil
}

// stop stops the server, if it runs, and removes its directory.
func (c *cluster) stop() error {
	var errs []error
	if isFile(filepath.Join(c.data(), "postmaster.pid")) {
		// immediate: the databases are thrown away, no need to
		// checkpoint them.
		if out, err := c.run("pg_ctl", "stop", "-w", "-m", "immediate", "-D", c.data()); err != nil {
			errs = append(errs, fmt.Errorf("stopping the PostgreSQL cluster in %s: %w\n%s", c.dir, err, out))
		}
	}
	if err := os.RemoveAll(c.dir); err != nil {
		errs = append(errs, fmt.Errorf("removing the PostgreSQL cluster: %w", err))
	}
	return errors.Join(errs...)
}

// run runs one of the PostgreSQL programs, as the cluster's user, from
// the cluster's directory (which that user may enter, unlike, perhaps,
// the test's working directory).
func (c *cluster) run(prog string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(c.bin, prog), args...)
	cmd.Dir = c.dir
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	// pg_ctl -l sends the server's output to the log file, so the
	// server does not hold these pipes open after pg_ctl exits.
	return cmd.CombinedOutput()
}

// clusterCredential is whom the cluster runs as: us, unless we are root,
// which initdb and postgres refuse to run as; then the postgres user the
// distribution's package creates.
func clusterCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, so the PostgreSQL cluster must run as the postgres user: %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("postgres user's uid %q: %w", u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("postgres user's gid %q: %w", u.Gid, err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}

// reapLeftovers stops and removes the clusters of test binaries that
// ended without RunMain stopping them. A cluster whose binary still runs
// is left alone: go test runs several packages' binaries at once.
// Failures are ignored: a leftover is untidy, not a reason to fail.
func reapLeftovers(bin string, cred *syscall.Credential) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), clusterPrefix+"*"))
	if os.TempDir() != "/tmp" {
		more, _ := filepath.Glob(filepath.Join("/tmp", clusterPrefix+"*"))
		dirs = append(dirs, more...)
	}
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, "owner"))
		if err != nil {
			continue // another user's, or not ours at all
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 || alive(pid) {
			continue
		}
		(&cluster{bin: bin, dir: dir, cred: cred}).stop()
	}
}

// alive reports whether process pid exists; EPERM means it does, as
// another user's.
func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
