package hostile

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/rugwatch/rugwatch/store"
	"github.com/rugwatch/rugwatch/testkit"
)

// Fixture is one laid-out machine and the command that runs the server.
type Fixture struct {
	Node, Script string
	Env          map[string]string
	Data         string // rugwatch's data dir, with a real store and socket
	Home         string // the user's HOME the server attacks
	Marker       string // the file it leaves in /var/tmp
	Pub          string
	Hide         []string // what the sandbox must hide
	SandboxHome  string   // the server's own HOME under the data dir
}

// Forks is how many processes the hostile server tries to start: more
// than the sandbox's default pids limit.
const Forks = 400

// newHostile lays out what a user running rugwatch has: a HOME with an ssh
// key, cloud credentials, a project's .env, a shell rc, the rugwatch
// binary on PATH, an MCP client's config and the approver key under
// ~/.config/rugwatch; rugwatch's data dir with a real bbolt store, the
// control socket and another server's HOME; an ssh-agent and a D-Bus
// socket; an abstract socket and a loopback listener of the host. Every
// file is open to everyone, so that only the sandbox can keep the server
// out. The server is script (mcpclient/testdata/hostile.mjs), run by node.
func New(t *testing.T, script string, env map[string]string) Fixture {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed")
	}
	script, err = filepath.Abs(script)
	if err != nil {
		t.Fatal(err)
	}
	dir := testkit.OutsideTmp(t, 0o755)
	home := filepath.Join(dir, "home")
	files := map[string]string{
		".ssh/id_ed25519":  "SSH-PRIVATE",
		".aws/credentials": "AWS-SECRET",
		"project/.env":     "DOTENV-SECRET",
		".bashrc":          "# rc\n",
		"bin/rugwatch":     "#!/bin/sh\n",
		".config/Claude/claude_desktop_config.json": "{}",
		".config/rugwatch/approver.key":             "PRIVATE-KEY",
		"../data/approver.key":                      "PRIVATE-KEY",
		"../data/servers/other/home/secret":         "OTHER-SERVER-SECRET",
		"../keys/approver.pub":                      "PUBLIC-KEY",
	}
	for rel, body := range files {
		p := filepath.Join(home, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o777); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o666); err != nil {
			t.Fatal(err)
		}
	}
	data := filepath.Join(dir, "data")
	db, err := store.Open(filepath.Join(data, "rugwatch.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	if err := os.Chmod(filepath.Join(data, "rugwatch.db"), 0o666); err != nil {
		t.Fatal(err)
	}
	serve := func(ln net.Listener) net.Listener {
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		return ln
	}
	listen := func(network, addr string) net.Listener {
		ln, err := net.Listen(network, addr)
		if err != nil {
			t.Fatal(err)
		}
		if network == "unix" && addr[0] != '@' {
			_ = os.Chmod(addr, 0o777)
		}
		return serve(ln)
	}
	listen("unix", filepath.Join(data, "rugwatch.sock"))
	listen("unix", filepath.Join(dir, "agent.sock"))
	listen("unix", filepath.Join(dir, "bus"))
	abstract := fmt.Sprintf("rugwatch-test-%d-%s", os.Getpid(), t.Name())
	listen("unix", "@"+abstract)
	loop := serve(testkit.ListenBelowEphemeral(t))
	marker := fmt.Sprintf("rugwatch-hostile-%d-%d", os.Getpid(), time.Now().UnixNano())
	t.Cleanup(func() { os.Remove(filepath.Join("/var/tmp", marker)) })
	e := map[string]string{
		"PATH":                  "/usr/local/bin:/usr/bin:/bin",
		"HOSTILE_HOME":          home,
		"HOSTILE_DATA":          data,
		"HOSTILE_OTHER":         filepath.Join(data, "servers", "other", "home", "secret"),
		"HOSTILE_PARENT":        strconv.Itoa(os.Getpid()),
		"HOSTILE_AGENT":         filepath.Join(dir, "agent.sock"),
		"HOSTILE_DBUS":          filepath.Join(dir, "bus"),
		"HOSTILE_ABSTRACT":      abstract,
		"HOSTILE_LOOPBACK_PORT": strconv.Itoa(loop.Addr().(*net.TCPAddr).Port),
		"HOSTILE_MARKER":        marker,
		"HOSTILE_FORKS":         strconv.Itoa(Forks),
	}
	for k, v := range env {
		e[k] = v
	}
	pub := filepath.Join(dir, "keys", "approver.pub")
	return Fixture{
		Node: node, Script: script, Env: e, Data: data, Home: home, Marker: marker, Pub: pub,
		Hide:        []string{data, pub, filepath.Join(home, ".config", "rugwatch")},
		SandboxHome: filepath.Join(data, "servers", "hostile", "home"),
	}
}
