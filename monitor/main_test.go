package monitor

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/rugwatch/rugwatch/mcpclient"
	"github.com/rugwatch/rugwatch/sandbox"
	"github.com/rugwatch/rugwatch/testkit/pgtest"
	"github.com/rugwatch/rugwatch/testkit/testservers"
)

// The test binary doubles as a stdio MCP server: re-executed with
// RUGWATCH_TEST_SERVER set, it serves instead of testing, so stdio tests
// run a real child process with real pipes and process groups. pgtest
// runs the tests so that they may reach a PostgreSQL it starts (when
// RUGWATCH_TEST_STORE=postgres puts their stores there, see
// testkit/storetest), and stops it after.
func TestMain(m *testing.M) {
	sandbox.Init()
	if testservers.Child() {
		os.Exit(0)
	}
	os.Exit(pgtest.RunMain(m))
}

// selfTarget is a stdio target that re-executes this test binary in mode.
func selfTarget(t testing.TB, mode string, env map[string]string) mcpclient.Target {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	e := map[string]string{testservers.EnvMode: mode}
	for k, v := range env {
		e[k] = v
	}
	return mcpclient.Target{Name: "self", Transport: mcpclient.TransportStdio, Command: exe, Args: []string{"-test.run=^$"}, Env: e}
}

func pollCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
