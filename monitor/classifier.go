package monitor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/mcpclient"
	"github.com/rugwatch/rugwatch/sandbox"
	"github.com/rugwatch/rugwatch/visible"
)

// Classifier runs an external content classifier — a local model, a
// vendor's tool wrapped in a script — on text the model will read: each
// new or changed tool description, and in the proxy each result. It is
// hostile input's neighbour, so it is treated like a stdio server: run
// sandboxed (the same hide list), fed one JSON request on stdin, bounded in
// time and output, and what it prints is parsed strictly and rendered
// inert. Its findings travel like rule findings, their rule ids prefixed
// "classifier/".
type Classifier struct {
	Command []string
	Timeout time.Duration
	// OnError "ignore" drops a failed run (logged); anything else raises a
	// warning finding "classifier/error" saying what failed.
	OnError string
	Sandbox mcpclient.Sandbox
	Log     *slog.Logger
}

// ClassifyRequest is what the classifier reads on stdin.
type ClassifyRequest struct {
	Kind   string `json:"kind"` // "description" or "result"
	Server string `json:"server"`
	Tool   string `json:"tool"`
	Path   string `json:"path"` // JSON pointer of the text in its document
	Text   string `json:"text"`
}

// Bounds on one classifier run.
const (
	maxClassifierOutput   = 1 << 20
	maxClassifierFindings = 64
	maxClassifierStderr   = 4 << 10
)

// Classify runs the classifier once; it never fails, it finds.
func (c *Classifier) Classify(ctx context.Context, req ClassifyRequest) []rugwatch.Finding {
	if c == nil || len(c.Command) == 0 {
		return nil
	}
	out, err := c.run(ctx, req)
	if err == nil {
		var fs []rugwatch.Finding
		fs, err = parseClassifierOutput(out, req.Path)
		if err == nil {
			return fs
		}
	}
	if c.Log != nil {
		c.Log.Warn("classifier failed", "kind", req.Kind, "server", req.Server, "tool", visible.Line(req.Tool), "error", visible.Message(err.Error()))
	}
	if c.OnError == "ignore" {
		return nil
	}
	return []rugwatch.Finding{{Rule: "classifier/error", Severity: rugwatch.SeverityWarning, Path: req.Path,
		Message: "classifier failed: " + visible.Bounded(err.Error(), 300)}}
}

func (c *Classifier) run(ctx context.Context, req ClassifyRequest) ([]byte, error) {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	in, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	path, err := exec.LookPath(c.Command[0])
	if err != nil {
		return nil, fmt.Errorf("finding %s: %w", c.Command[0], err)
	}
	// The same start policy and confinement as a stdio server's: a fresh
	// HOME, and the network only through the egress allow-list (a local
	// model's API, where one is granted).
	spec := sandbox.Spec{Path: path, Args: c.Command, Env: []string{"PATH=/usr/local/bin:/usr/bin:/bin"},
		Protect: c.Sandbox.Hide, Mounts: c.Sandbox.Mounts, Network: c.Sandbox.Network,
		Egress: &sandbox.Egress{Allow: c.Sandbox.Egress}, Resources: c.Sandbox.Resources}
	cmd := sandbox.Command(c.Sandbox.Mode, spec)
	stdout := &boundedBuffer{max: maxClassifierOutput}
	stderr := mcpclient.NewCapBuffer(maxClassifierStderr)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(in), stdout, stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the classifier: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return nil, fmt.Errorf("the classifier exited: %v; stderr: %s", err, visible.Bounded(stderr.String(), 300))
		}
	case <-ctx.Done():
		// Kill ends the sandbox, and everything the classifier started in
		// it; unconfined, its process group.
		cmd.Kill()
		<-done
		return nil, fmt.Errorf("the classifier did not answer within %v", timeout)
	}
	if stdout.over {
		return nil, &mcpclient.LimitError{Limit: "classifier output", Value: maxClassifierOutput}
	}
	return stdout.buf.Bytes(), nil
}

// boundedBuffer keeps at most max bytes and says whether more came.
type boundedBuffer struct {
	mu   sync.Mutex
	max  int
	buf  bytes.Buffer
	over bool
}

func (b *boundedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(p) // all of it is taken, the excess dropped, so the writer never blocks
	if room := b.max - b.buf.Len(); len(p) > room {
		b.over = true
		p = p[:max(room, 0)]
	}
	b.buf.Write(p)
	return n, nil
}

// parseClassifierOutput reads {"findings":[{rule,severity,path,message}]}
// strictly: anything else is an error, and what is kept is bounded and made
// inert.
func parseClassifierOutput(out []byte, defaultPath string) ([]rugwatch.Finding, error) {
	dec := json.NewDecoder(bytes.NewReader(out))
	dec.DisallowUnknownFields()
	var res struct {
		Findings []struct {
			Rule     string `json:"rule"`
			Severity string `json:"severity"`
			Path     string `json:"path"`
			Message  string `json:"message"`
		} `json:"findings"`
	}
	if err := dec.Decode(&res); err != nil {
		return nil, fmt.Errorf("its output is not {\"findings\": [...]}: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("its output has more after the JSON object")
	}
	if len(res.Findings) > maxClassifierFindings {
		res.Findings = res.Findings[:maxClassifierFindings]
	}
	out2 := make([]rugwatch.Finding, 0, len(res.Findings))
	for _, f := range res.Findings {
		sev := rugwatch.Severity(f.Severity)
		switch sev {
		case rugwatch.SeverityInfo, rugwatch.SeverityWarning, rugwatch.SeverityCritical:
		default:
			sev = rugwatch.SeverityWarning
		}
		path := defaultPath
		if strings.HasPrefix(f.Path, "/") && len(f.Path) <= 256 {
			path = visible.Line(f.Path)
		}
		out2 = append(out2, rugwatch.Finding{Rule: "classifier/" + ruleToken(f.Rule), Severity: sev, Path: path,
			Message: visible.Bounded(f.Message, 512)})
	}
	return out2, nil
}

// ruleToken keeps a classifier's rule id to [a-z0-9._-], 64 bytes.
func ruleToken(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if b.Len() >= 64 {
			break
		}
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-' {
			b.WriteRune(r)
		}
	}
	if b.Len() == 0 {
		return "finding"
	}
	return b.String()
}
