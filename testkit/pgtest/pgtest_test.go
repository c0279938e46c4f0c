package pgtest_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rugwatch/rugwatch/testkit/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.RunMain(m)) }

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connecting to %s: %v", dsn, err)
	}
	return conn
}

func queryInt(t *testing.T, conn *pgx.Conn, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := conn.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func currentDatabase(t *testing.T, conn *pgx.Conn) string {
	t.Helper()
	var name string
	if err := conn.QueryRow(context.Background(), "SELECT current_database()").Scan(&name); err != nil {
		t.Fatalf("current_database: %v", err)
	}
	return name
}

const countTables = "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"

// Two DSNs are two empty databases, and what one test writes the other
// does not see.
func TestDSNIsFreshAndSeparate(t *testing.T) {
	dsnA, dsnB := pgtest.DSN(t), pgtest.DSN(t)
	if dsnA == dsnB {
		t.Fatalf("both DSNs are %s", dsnA)
	}
	a, b := connect(t, dsnA), connect(t, dsnB)
	defer a.Close(context.Background())
	defer b.Close(context.Background())

	nameA, nameB := currentDatabase(t, a), currentDatabase(t, b)
	if nameA == nameB {
		t.Fatalf("both DSNs reach database %s", nameA)
	}
	for _, conn := range []*pgx.Conn{a, b} {
		if n := queryInt(t, conn, countTables); n != 0 {
			t.Errorf("database %s is not empty: %d tables", currentDatabase(t, conn), n)
		}
	}

	if _, err := a.Exec(context.Background(), "CREATE TABLE seen (id int PRIMARY KEY)"); err != nil {
		t.Fatalf("creating a table: %v", err)
	}
	if n := queryInt(t, a, countTables); n != 1 {
		t.Errorf("database %s has %d tables after CREATE TABLE, want 1", nameA, n)
	}
	if n := queryInt(t, b, countTables); n != 0 {
		t.Errorf("database %s sees %d tables after one was created in %s, want 0", nameB, n, nameA)
	}
}

// The database is dropped when its test ends, even with a connection to
// it still open.
func TestDSNDroppedAfterTest(t *testing.T) {
	other := connect(t, pgtest.DSN(t))
	defer other.Close(context.Background())

	var (
		name string
		open *pgx.Conn
	)
	t.Run("uses a database", func(t *testing.T) {
		open = connect(t, pgtest.DSN(t))
		name = currentDatabase(t, open)
	})
	if open == nil {
		return // the subtest failed, and said why
	}
	defer open.Close(context.Background())

	if n := queryInt(t, other, "SELECT count(*) FROM pg_database WHERE datname = $1", name); n != 0 {
		t.Errorf("database %s still exists after its test ended", name)
	}
}

// A private cluster stops and starts with its data kept, and while frozen
// it accepts no query, which ends only at the client's own deadline.
func TestPrivateStopStartFreeze(t *testing.T) {
	p := pgtest.Private(t)
	conn := connect(t, p.DSN())
	if _, err := conn.Exec(context.Background(), "CREATE TABLE kept (n int); INSERT INTO kept VALUES (7)"); err != nil {
		t.Fatal(err)
	}
	conn.Close(context.Background())

	p.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if c, err := pgx.Connect(ctx, p.DSN()); err == nil {
		c.Close(context.Background())
		t.Fatal("connected to a stopped cluster")
	}
	p.Start()
	conn = connect(t, p.DSN())
	defer conn.Close(context.Background())
	if n := queryInt(t, conn, "SELECT n FROM kept"); n != 7 {
		t.Fatalf("after a restart: %d", n)
	}

	p.Freeze()
	qctx, qcancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer qcancel()
	var n int
	err := conn.QueryRow(qctx, "SELECT 1").Scan(&n)
	p.Thaw()
	if err == nil || qctx.Err() == nil {
		t.Fatalf("a query to a frozen cluster: %v, %v (want it to wait until its deadline)", err, qctx.Err())
	}
	// The connection the deadline cut is gone; a new one answers.
	conn2 := connect(t, p.DSN())
	defer conn2.Close(context.Background())
	if n := queryInt(t, conn2, "SELECT 1"); n != 1 {
		t.Fatal(n)
	}
}
