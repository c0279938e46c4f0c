package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// clusterRig is replicas of `rugwatch serve` sharing one PostgreSQL
// database: one HOME for all (so one approver key, trusted by every data
// dir, and one listener token), a config and a data dir per replica.
type clusterRig struct {
	t      *testing.T
	dir    string
	shared string // what the demo servers see: their turn file
	env    []string
	cfgs   map[string]string // replica: config path
}

// newClusterRig writes one config per replica: common is the config
// without data_dir and cluster (store, servers, notify, …), extra[r] is
// added to replica r's. Each data dir is initialised with the shared key.
func newClusterRig(t *testing.T, dsn string, env []string, replicas []string, lease string, common string, extra map[string]string) *clusterRig {
	t.Helper()
	// Not t.TempDir(): the test's long name in the path would leave the
	// control socket's over the 108 bytes a Unix socket's may have.
	dir, err := os.MkdirTemp("", "rwc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	r := &clusterRig{t: t, dir: dir, shared: sharedDir(t), cfgs: map[string]string{},
		env: append(baseEnv(dir), append([]string{"RUGWATCH_DSN=" + dsn}, env...)...)}
	for _, name := range replicas {
		rd := filepath.Join(dir, name)
		if err := os.MkdirAll(rd, 0o700); err != nil {
			t.Fatal(err)
		}
		body := fmt.Sprintf("data_dir: %s/data\nstore: \"${env:RUGWATCH_DSN}\"\ncluster: {replica: %s, lease: %s}\n%s%s",
			rd, name, lease, extra[name], strings.ReplaceAll(common, "@SHARED@", r.shared))
		r.cfgs[name] = writeConfig(t, rd, body)
		r.run(name, 0, "init")
	}
	return r
}

// demoServers is the servers: block of n demo servers s01… that count
// their listings in @SHARED@/<name>.state and stay honest until that
// count passes a million: turnDemoServers turns them all, each at its
// next poll (a new process per poll, so the count is what carries it).
func demoServers(n int) string {
	var b strings.Builder
	b.WriteString("servers:\n")
	for i := range n {
		fmt.Fprintf(&b, `  - name: s%02[1]d
    command: "@self"
    args: ["demo-server", "--after", "1000000", "--state", "@SHARED@/s%02[1]d.state"]
    mounts: [{path: "@SHARED@", mode: rw}]
`, i+1)
	}
	return b.String()
}

// turnDemoServers makes every demoServers server list malicious tools
// from its next poll on, unless a poll in flight writes its older count
// back (see TestClusterKillOneReplica, which turns them again while it
// waits).
func (r *clusterRig) turnDemoServers(n int) {
	r.t.Helper()
	for i := range n {
		p := filepath.Join(r.shared, fmt.Sprintf("s%02d.state", i+1))
		if err := os.WriteFile(p+".tmp", []byte("2000000\n"), 0o666); err != nil {
			r.t.Fatal(err)
		}
		if err := os.Rename(p+".tmp", p); err != nil {
			r.t.Fatal(err)
		}
	}
}

func (r *clusterRig) run(replica string, code int, args ...string) binRun {
	r.t.Helper()
	res := runBin(r.t, r.env, "", append([]string{"--config", r.cfgs[replica]}, args...)...)
	if res.code != code {
		r.t.Fatalf("rugwatch %s (replica %s): exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), replica, res.code, code, res.stdout, res.stderr)
	}
	return res
}

// serve starts replica's daemon and waits until it serves.
func (r *clusterRig) serve(replica string) *daemonProc {
	r.t.Helper()
	d := startDaemon(r.t, r.env, "serve", "--config", r.cfgs[replica])
	d.wait(0, 60*time.Second, func(l logLine) bool { return l.str("msg") == "serving" })
	return d
}

// token is the listeners' bearer token init wrote.
func (r *clusterRig) token() string {
	return readToken(r.t, filepath.Join(r.dir, ".config", "rugwatch", "token"))
}

// clusterServer is what the cluster tests read of a server in `status --json`.
type clusterServer struct {
	Name         string     `json:"name"`
	Owner        string     `json:"owner"`
	LastPolledAt *time.Time `json:"last_polled_at"`
	Tools        []struct {
		Name  string `json:"name"`
		State string `json:"state"`
	} `json:"tools"`
}

// status is `rugwatch status --json` through replica's config (its
// control socket while it runs), by server name.
func (r *clusterRig) status(replica string) map[string]clusterServer {
	r.t.Helper()
	res := runBin(r.t, r.env, "", "--config", r.cfgs[replica], "status", "--json")
	if res.code > 1 {
		r.t.Fatalf("status (replica %s): exit %d\n%s", replica, res.code, res.stderr)
	}
	var st struct {
		Servers []clusterServer `json:"servers"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &st); err != nil {
		r.t.Fatalf("status --json: %v\n%s", err, res.stdout)
	}
	out := map[string]clusterServer{}
	for _, s := range st.Servers {
		out[s.Name] = s
	}
	return out
}

// until reads status through replica every interval until ok holds, and
// fails the test when it does not within timeout.
func (r *clusterRig) until(replica, what string, timeout time.Duration, ok func(map[string]clusterServer) bool) map[string]clusterServer {
	r.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := r.status(replica)
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("%s: not within %v; last status: %+v", what, timeout, st)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// toolStates maps each tool of s to its state.
func (s clusterServer) toolStates() map[string]string {
	m := map[string]string{}
	for _, t := range s.Tools {
		m[t.Name] = t.State
	}
	return m
}

// proxyClient connects the go-sdk client to server on the daemon's
// proxy_listen, with the bearer token.
func proxyClient(t *testing.T, d *daemonProc, token, server string) *goClient {
	t.Helper()
	l, _ := d.wait(0, 60*time.Second, func(l logLine) bool { return l.str("msg") == "proxy listening" })
	return connectGo(t, &mcp.StreamableClientTransport{Endpoint: "http://" + l.str("proxy_listen") + "/mcp/" + server, HTTPClient: bearerClient(token)})
}

// changedWithin waits for a tools list_changed at g and returns how long
// after since it arrived; it fails the test after timeout.
func changedWithin(t *testing.T, g *goClient, since time.Time, timeout time.Duration, what string) time.Duration {
	t.Helper()
	select {
	case <-g.changed:
		return time.Since(since)
	case <-time.After(timeout):
		t.Fatalf("%s: no tools list_changed within %v", what, timeout)
		return 0
	}
}

// drainChanged forgets the list_changed notifications already received.
func drainChanged(g *goClient) {
	for {
		select {
		case <-g.changed:
		default:
			return
		}
	}
}

// listedNames is the names of the tools the client is served now.
func listedNames(t *testing.T, g *goClient) []string {
	t.Helper()
	names := sortedNames(toolMap(t, g.list()))
	return slices.Clip(names)
}

// readyz is the status code of GET /readyz on the daemon's http_listen.
func readyz(t *testing.T, addr string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 512)
	n, _ := resp.Body.Read(buf)
	b.Write(buf[:n])
	return resp.StatusCode, strings.TrimSpace(b.String())
}
