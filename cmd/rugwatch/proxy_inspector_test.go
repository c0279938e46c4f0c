package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// inspector is the MCP Inspector's CLI mode: @modelcontextprotocol/inspector-cli,
// pinned in package-lock.json, the package `npx @modelcontextprotocol/inspector
// --cli` (v1) runs.
type inspector struct {
	bin, dir string
	env      []string
}

func newInspector(t *testing.T, env []string) *inspector {
	t.Helper()
	nodeBin(t)
	bin, err := filepath.Abs("../../node_modules/.bin/mcp-inspector-cli")
	if err == nil {
		bin, err = filepath.EvalSymlinks(bin)
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("the MCP Inspector CLI is not installed (%v); .ci/run must run npm ci", err)
		}
		t.Skipf("the MCP Inspector CLI is not installed; run `npm ci` (%v)", err)
	}
	// It runs from its own build directory: the CLI finds its package.json
	// (its client name and version) at ../package.json from the working
	// directory, not from its own file, and fails anywhere else.
	return &inspector{bin: bin, dir: filepath.Dir(bin), env: env}
}

// run runs the Inspector once in CLI mode and returns what it wrote: the
// method's result as JSON on stdout, or an error on stderr with exit 1.
func (in *inspector) run(t *testing.T, wantCode int, args ...string) (stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, in.bin, append([]string{"--cli"}, args...)...)
	cmd.Dir, cmd.Env = in.dir, in.env
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running the Inspector: %v", err)
	}
	if code != wantCode {
		t.Fatalf("inspector %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, wantCode, out.String(), errb.String())
	}
	return out.String(), errb.String()
}

// TestProxyE2EInspector: the MCP Inspector's CLI through proxy_listen (at
// /<server>/mcp, with the bearer token) and through the stdio `rugwatch
// proxy`, which it launches from an mcpServers config as a client app
// does: it lists exactly the approved tools, as approved, calls one, and
// is refused the pending one, which straight to the server it calls.
func TestProxyE2EInspector(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	r := newProxyRig(t, "proxy_listen: 127.0.0.1:0")
	in := newInspector(t, r.env)
	d := startDaemon(t, r.env, "serve", "--config", r.cfg)
	l, _ := d.wait(0, 60*time.Second, func(l logLine) bool { return l.str("msg") == "proxy listening" })
	tok := readToken(t, filepath.Join(r.dir, ".config", "rugwatch", "token"))
	// The Inspector's own config format, as a user's client config holds
	// rugwatch in the server's place (and, for the control, the server).
	servers := filepath.Join(r.dir, "inspector.json")
	b, err := json.Marshal(map[string]any{"mcpServers": map[string]any{
		"everything": map[string]any{"command": rugwatchBin(t), "args": []string{"--config", r.cfg, "proxy", "everything"}},
		"direct":     map[string]any{"command": everythingBin(t), "args": []string{"stdio"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(servers, b, 0o600); err != nil {
		t.Fatal(err)
	}
	call := func(tool string, args ...string) []string {
		return append([]string{"--method", "tools/call", "--tool-name", tool, "--tool-arg"}, args...)
	}

	t.Run("without the proxy the pending tool is called", func(t *testing.T) {
		out, _ := in.run(t, 0, append([]string{"--config", servers, "--server", "direct"}, call("echo", "message=hi")...)...)
		if got := resultText(t, json.RawMessage(out)); !strings.Contains(got, "hi") {
			t.Errorf("echo straight to the server: %q", got)
		}
	})
	base := "http://" + l.str("proxy_listen")
	for _, tc := range []struct {
		name   string
		target []string
	}{
		// A URL ending in /mcp is taken for Streamable HTTP.
		{"proxy_listen", []string{base + "/everything/mcp", "--header", "Authorization: Bearer " + tok}},
		{"stdio", []string{"--config", servers, "--server", "everything"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, _ := in.run(t, 0, append(tc.target, "--method", "tools/list")...)
			var listed struct {
				Tools []json.RawMessage `json:"tools"`
			}
			if err := json.Unmarshal([]byte(out), &listed); err != nil {
				t.Fatalf("tools/list output: %v\n%s", err, out)
			}
			tools := wantExactlyApproved(t, r.env, r.cfg, "everything", listed.Tools, true)
			if _, ok := tools["echo"]; ok {
				t.Fatal("the pending echo is listed")
			}
			out, _ = in.run(t, 0, append(tc.target, call("get-sum", "a=2", "b=3")...)...)
			if got := resultText(t, json.RawMessage(out)); !strings.Contains(got, "5") {
				t.Errorf("get-sum through the proxy: %q", got)
			}
			_, errOut := in.run(t, 1, append(tc.target, call("echo", "message=hi")...)...)
			if !strings.Contains(errOut, "MCP error -32001") || !strings.Contains(errOut, `tool "echo" is not approved`) {
				t.Errorf("echo through the proxy, want refused as not approved:\n%s", errOut)
			}
		})
	}
	t.Run("proxy_listen without the token", func(t *testing.T) {
		_, errOut := in.run(t, 1, base+"/everything/mcp", "--method", "tools/list")
		if !strings.Contains(errOut, "bearer token required") {
			t.Errorf("without the token:\n%s", errOut)
		}
	})
	t.Run("proxy_listen at /mcp/<server> is taken for SSE", func(t *testing.T) {
		// Why /<server>/mcp exists: the Inspector picks the transport by
		// the path, and takes any URL not ending in /mcp for the old SSE
		// one, which the proxy does not serve.
		_, errOut := in.run(t, 1, base+"/mcp/everything", "--header", "Authorization: Bearer "+tok, "--method", "tools/list")
		if !strings.Contains(errOut, "SSE error") {
			t.Errorf("at /mcp/everything:\n%s", errOut)
		}
	})
	d.stop()
}
