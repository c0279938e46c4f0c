package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/report"
	"github.com/rugwatch/rugwatch/store"
	"github.com/rugwatch/rugwatch/testkit/pgtest"
)

// closedPort is a local address nothing listens on: a webhook there is
// refused, so its deliveries stay pending.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// A store built by real commands (approvals, a drift, alerts that could
// not be delivered) moves into PostgreSQL with `store migrate`; the
// config then names the database and verify, verify --head with the
// head the drift's alert carried, alerts and status say what they said
// of the bbolt file.
func TestStoreMigrateToPostgres(t *testing.T) {
	dsn := pgtest.DSN(t)
	c := newCLI(t, 2)
	appendConfig(t, c, "notify:\n  webhooks:\n    - name: down\n      url: http://"+closedPort(t)+"/hook\n      secret: \"${env:WH}\"\n      min_severity: info\n")
	c.env["WH"] = "whsec_" + strings.Repeat("A", 32)
	c.env["RUGWATCH_ALERT_DRAIN_TIMEOUT"] = "300ms"
	c.want(0, "", "init")
	c.want(1, "", "check")
	c.want(0, "", "approve", "demo", "--all", "--yes")
	c.want(0, "", "check")
	c.want(1, "", "check") // the demo server turns: drift

	head := driftHead(t, c)
	var before report.VerifyReport
	decodeJSON(t, c.want(0, "", "verify", "--json").stdout, &before)
	if !before.OK || before.Head == "" || before.ApprovalsChecked == 0 {
		t.Fatalf("verify before the move: %+v", before)
	}
	status := c.want(1, "", "status", "--json").stdout
	var alerts report.AlertsReport
	decodeJSON(t, c.run("", "alerts", "--json").stdout, &alerts)
	if len(alerts.Pending) == 0 {
		t.Fatal("no pending delivery before the move: the webhook's port answered?")
	}

	// Not with the password on the command line: a reference.
	c.env["RUGWATCH_DSN"] = dsn
	r := c.want(0, "", "store", "migrate", "--to", "${env:RUGWATCH_DSN}")
	t.Logf("store migrate:\n%s", r.stdout)
	for _, want := range []string{"read back identical", "event chain ok", "head " + before.Head, `store: "${env:RUGWATCH_DSN}"`} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("store migrate output lacks %q:\n%s", want, r.stdout)
		}
	}
	var out struct {
		SchemaVersion int                 `json:"schema_version"`
		Keys          int                 `json:"keys"`
		Verify        report.VerifyReport `json:"verify"`
		Store         string              `json:"store"`
	}
	// The database holds the store now: a second run is refused and
	// says why, and changes nothing.
	again := c.want(2, "", "store", "migrate", "--to", "${env:RUGWATCH_DSN}", "--json")
	if !strings.Contains(again.stderr, "already holds rugwatch data") || again.stdout != "" {
		t.Errorf("second migrate into the same database:\nstdout:\n%s\nstderr:\n%s", again.stdout, again.stderr)
	}
	// JSON, into a fresh database.
	c.env["OTHER_DSN"] = pgtest.DSN(t)
	decodeJSON(t, c.want(0, "", "store", "migrate", "--to", "${env:OTHER_DSN}", "--json").stdout, &out)
	if out.SchemaVersion != 1 || out.Keys == 0 || !out.Verify.OK || out.Verify.Head != before.Head || out.Store != "${env:OTHER_DSN}" {
		t.Errorf("store migrate --json: %+v", out)
	}

	appendConfig(t, c, "store: \"${env:RUGWATCH_DSN}\"\n")
	after := c.want(0, "", "verify").stdout
	if !strings.Contains(after, "log head: "+before.Head) {
		t.Errorf("verify on PostgreSQL:\n%s", after)
	}
	if out := c.want(0, "", "verify", "--head", head).stdout; !strings.Contains(out, "head "+head+": held") {
		t.Errorf("verify --head %s on PostgreSQL:\n%s", head, out)
	}
	var moved report.AlertsReport
	decodeJSON(t, c.run("", "alerts", "--json").stdout, &moved)
	if ids(moved.Pending) != ids(alerts.Pending) || !strings.Contains(ids(moved.Pending), "webhook:down") {
		t.Errorf("pending deliveries after the move: %s, before: %s", ids(moved.Pending), ids(alerts.Pending))
	}
	if got, want := serverStates(t, c.want(1, "", "status", "--json").stdout), serverStates(t, status); got != want {
		t.Errorf("status on PostgreSQL:\n%s\nbefore:\n%s", got, want)
	}
	// The config names the database now: nothing is left to migrate.
	if r := c.want(2, "", "store", "migrate", "--to", "${env:OTHER_DSN}"); !strings.Contains(r.stderr, "already names a PostgreSQL store") {
		t.Errorf("migrate with store: set: %s", r.stderr)
	}
}

// migrate refuses what it cannot do and says what to type: no --to, a
// --to that is not a database, a store held by another process (serve).
func TestStoreMigrateRefuses(t *testing.T) {
	dsn := pgtest.DSN(t)
	c := newCLI(t, 100)
	c.want(0, "", "init")
	c.want(2, "", "store")
	c.want(2, "", "store", "copy")
	c.want(2, "", "store", "migrate")
	if r := c.want(2, "", "store", "migrate", "--to", "/var/lib/rugwatch.db"); !strings.Contains(r.stderr, "postgres://") {
		t.Errorf("--to a file: %s", r.stderr)
	}
	// A password on the command line works, with a warning, and never
	// shows in what is printed.
	withPassword := strings.Replace(dsn, "postgres://", "postgres://rugwatch:hunter2@", 1)
	if strings.Contains(dsn, "@") {
		withPassword = dsn + "&password=hunter2"
		if !strings.Contains(dsn, "?") {
			withPassword = dsn + "?password=hunter2"
		}
	}
	r := c.run("", "store", "migrate", "--to", withPassword)
	t.Logf("with a password: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	if strings.Contains(r.stdout+r.stderr, "hunter2") {
		t.Errorf("the password shows:\nstdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr, "carries a password") {
		t.Errorf("no warning of the password on the command line:\n%s", r.stderr)
	}
	if r.code == 0 && !strings.Contains(r.stdout, "${file:/run/secrets/rugwatch_dsn}") {
		t.Errorf("the next step is not a reference:\n%s", r.stdout)
	}

	// serve holds the store: migrate says to stop it first.
	held := newCLI(t, 100)
	held.want(0, "", "init")
	dbPath := strings.TrimSuffix(held.config, "rugwatch.yaml") + "data/rugwatch.db"
	hold := holdStore(t, dbPath)
	defer hold()
	held.env["RUGWATCH_DSN"] = pgtest.DSN(t)
	r = held.want(2, "", "store", "migrate", "--to", "${env:RUGWATCH_DSN}")
	if !strings.Contains(r.stderr, "stop `rugwatch serve`") {
		t.Errorf("migrate of a held store: %s", r.stderr)
	}
	t.Log(r.stderr)
}

func appendConfig(t *testing.T, c *cli, text string) {
	t.Helper()
	cfg, err := os.ReadFile(c.config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.config, append(cfg, text...), 0o600); err != nil {
		t.Fatal(err)
	}
}

func decodeJSON(t *testing.T, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("decoding %T: %v\n%s", v, err, s)
	}
}

// driftHead is SEQ:CHAIN_HEAD of the drift event, as its alert carried it.
func driftHead(t *testing.T, c *cli) string {
	t.Helper()
	var hist struct {
		Events []rugwatch.Event `json:"events"`
	}
	decodeJSON(t, c.want(0, "", "history", "demo", "--json").stdout, &hist)
	for _, e := range hist.Events {
		if e.Type == rugwatch.EventToolDrifted && e.ChainHead.Valid() {
			return fmt.Sprintf("%d:%s", e.Seq, e.ChainHead)
		}
	}
	t.Fatalf("no drift event with a chain head: %+v", hist.Events)
	return ""
}

// ids lists deliveries by id and state.
func ids(ds []store.Delivery) string {
	var out []string
	for _, d := range ds {
		out = append(out, d.ID+" "+d.State)
	}
	return strings.Join(out, ", ")
}

// holdStore opens the store file as serve does and returns how to let
// go of it.
func holdStore(t *testing.T, path string) func() {
	t.Helper()
	db, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return func() { _ = db.Close() }
}

// serverStates is what status --json says of every server and tool, in
// a form to compare.
func serverStates(t *testing.T, s string) string {
	t.Helper()
	var b strings.Builder
	for _, sr := range decodeReport(t, s).Servers {
		polled := "never"
		if sr.LastPolledAt != nil {
			polled = sr.LastPolledAt.String()
		}
		fmt.Fprintf(&b, "%s reachable=%v polled=%s instructions=%s\n", sr.Name, sr.Reachable, polled, sr.InstructionsDigest)
		for _, tr := range sr.Tools {
			fmt.Fprintf(&b, "  %s %s %s observed=%s approved=%s\n", tr.Name, tr.State, tr.Severity, tr.ObservedDigest, tr.ApprovedDigest)
		}
	}
	return b.String()
}

// A relative ${file:} in --to names a file from where migrate runs; the
// config line migrate suggests names it whole, since the config would
// resolve a relative one against its own directory.
func TestStoreMigrateRelativeFileReference(t *testing.T) {
	t.Chdir(t.TempDir())
	r, err := dsnReference("${file:secrets/dsn}")
	if err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	if got, want := r.configValue(), "${file:"+filepath.Join(wd, "secrets/dsn")+"}"; got != want {
		t.Fatalf("config line %q, want %q", got, want)
	}
	if r, err = dsnReference("${file:/run/secrets/dsn}"); err != nil || r.configValue() != "${file:/run/secrets/dsn}" {
		t.Fatalf("absolute: %q, %v", r.configValue(), err)
	}
}
