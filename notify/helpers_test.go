package notify

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rugwatch/rugwatch/configs"
)

// Test signing secrets, Standard Webhooks style.
const (
	testSecretA = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	testSecretB = "whsec_c2Vjb25kLXNlY3JldC1mb3Itcm90YXRpb24="
)

// delivery is one request a receiver verified.
type delivery struct {
	ID, Timestamp string
	Body          []byte
	Header        http.Header
	At            time.Time
	ValidSigs     int // how many of the receiver's keys had a matching signature
}

// receiver is a Standard Webhooks endpoint that verifies every request
// the way a careful consumer would (constant-time MAC comparison over the
// exact bytes received) and answers as its script says.
type receiver struct {
	t      *testing.T
	keys   [][]byte
	script func(n int) (status int, header http.Header) // n counts from 0

	mu   sync.Mutex
	got  []delivery
	srv  *httptest.Server
	seen chan struct{}
}

func newReceiver(t *testing.T, secrets []string, script func(n int) (int, http.Header)) *receiver {
	t.Helper()
	r := &receiver{t: t, script: script, seen: make(chan struct{}, 1000)}
	for _, s := range secrets {
		k, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, "whsec_"))
		if err != nil {
			t.Fatal(err)
		}
		r.keys = append(r.keys, k)
	}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) URL() string { return r.srv.URL + "/hook" }

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		r.t.Errorf("receiver: read body: %v", err)
	}
	id := req.Header.Get("webhook-id")
	ts := req.Header.Get("webhook-timestamp")
	if req.Method != http.MethodPost || req.Header.Get("Content-Type") != "application/json" {
		r.t.Errorf("receiver: %s with content type %q", req.Method, req.Header.Get("Content-Type"))
	}
	if _, err := strconv.ParseInt(ts, 10, 64); err != nil {
		r.t.Errorf("receiver: webhook-timestamp %q is not unix seconds", ts)
	}
	valid := r.verify(id, ts, body, req.Header.Get("webhook-signature"))
	if len(r.keys) > 0 && valid == 0 {
		r.t.Errorf("receiver: request %s has no valid signature", id)
	}
	r.mu.Lock()
	n := len(r.got)
	r.got = append(r.got, delivery{ID: id, Timestamp: ts, Body: body, Header: req.Header.Clone(), At: time.Now(), ValidSigs: valid})
	r.mu.Unlock()
	status, hdr := http.StatusOK, http.Header(nil)
	if r.script != nil {
		status, hdr = r.script(n)
	}
	for k, vs := range hdr {
		w.Header()[k] = vs
	}
	w.WriteHeader(status)
	r.seen <- struct{}{}
}

// verify counts the keys for which some v1 signature in header matches.
func (r *receiver) verify(id, ts string, body []byte, header string) int {
	var sigs [][]byte
	for _, part := range strings.Fields(header) {
		v, ok := strings.CutPrefix(part, "v1,")
		if !ok {
			continue
		}
		b, err := base64.StdEncoding.DecodeString(v)
		if err == nil {
			sigs = append(sigs, b)
		}
	}
	valid := 0
	for _, k := range r.keys {
		mac := hmac.New(sha256.New, k)
		mac.Write([]byte(id + "." + ts + "."))
		mac.Write(body)
		want := mac.Sum(nil)
		for _, s := range sigs {
			if hmac.Equal(s, want) {
				valid++
				break
			}
		}
	}
	return valid
}

func (r *receiver) deliveries() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery(nil), r.got...)
}

func status(code int) func(int) (int, http.Header) {
	return func(int) (int, http.Header) { return code, nil }
}

func secret(t *testing.T, tmpl string) configs.Secret {
	t.Helper()
	s, err := configs.NewSecret(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// env is a configs.Resolver over a fixed environment.
func env(vars map[string]string) configs.Resolver {
	return configs.Resolver{LookupEnv: func(k string) (string, bool) { v, ok := vars[k]; return v, ok }}
}

// eventually waits until cond holds, checking it again after every line
// the dispatcher logs. The dispatcher logs each delivery it settles after
// committing it, and a receiver records a request before answering it, so
// every change cond can see is followed by a line. It asserts an outcome,
// never a duration: the bound only stops a broken dispatcher from hanging
// the run.
func (r *running) eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	more := r.logs.Wrote()
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	for !cond() {
		select {
		case <-more:
		case <-deadline.C:
			t.Fatalf("gave up waiting for %s\n%s", what, r.logs.String())
		}
	}
}
