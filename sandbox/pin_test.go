package sandbox

import (
	"bufio"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// useRecorder collects Pin.OnUse calls as "dest refused=bool".
type useRecorder struct {
	mu    sync.Mutex
	calls []string
}

func (r *useRecorder) use(dest string, refused bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, fmt.Sprintf("%s refused=%v", dest, refused))
}

func (r *useRecorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls...)
}

// TestEgressPinNarrowsAllow: both upstreams are on the allow-list, only
// one is pinned. Enforced, the other is refused with a 403 the client
// reads, never connected to, and reported as refused; the pinned one and
// an exempt one (the launcher's registry) pass, and only the pinned one
// is reported as used. Not enforced, both pass and both are reported.
func TestEgressPinNarrowsAllow(t *testing.T) {
	noLeaks(t)
	pinned, other, exempt := startUpstream(t), startUpstream(t), startUpstream(t)
	get := func(e *Egress, addr string) (int, string) {
		t.Helper()
		c, done := serveOne(t, t.Context(), e)
		br := bufio.NewReader(c)
		resp, body := exchange(t, c, br, http.MethodGet, "GET http://"+addr+"/p HTTP/1.1\r\n\r\n")
		finish(t, c, br, done)
		return resp.StatusCode, body
	}
	allow := []string{pinned.addr(), other.addr(), exempt.addr()}
	var uses useRecorder
	e := &Egress{Allow: allow, Pin: &Pin{Enforce: true, Dests: []string{pinned.addr()}, Exempt: []string{exempt.addr()}, OnUse: uses.use}}
	if code, body := get(e, pinned.addr()); code != http.StatusOK || !strings.Contains(body, "uri=/p") {
		t.Errorf("pinned destination: %d %q", code, body)
	}
	for range 2 {
		code, body := get(e, other.addr())
		if code != http.StatusForbidden || !strings.Contains(body, "not among the destinations approved for this server") {
			t.Errorf("destination outside the pin: %d %q", code, body)
		}
	}
	if code, _ := get(e, exempt.addr()); code != http.StatusOK {
		t.Errorf("exempt destination: %d", code)
	}
	if n := other.accepted.Load(); n != 0 {
		t.Errorf("the destination outside the pin accepted %d connections", n)
	}
	want := []string{pinned.addr() + " refused=false", other.addr() + " refused=true"}
	if got := uses.got(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("OnUse calls %q, want %q", got, want)
	}

	// Not enforced: the pin only watches.
	uses = useRecorder{}
	e = &Egress{Allow: allow, Pin: &Pin{Dests: []string{pinned.addr()}, Exempt: []string{exempt.addr()}, OnUse: uses.use}}
	for _, addr := range []string{other.addr(), pinned.addr(), exempt.addr()} {
		if code, _ := get(e, addr); code != http.StatusOK {
			t.Errorf("unenforced pin, %s: %d", addr, code)
		}
	}
	want = []string{other.addr() + " refused=false", pinned.addr() + " refused=false"}
	if got := uses.got(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("OnUse calls %q, want %q", got, want)
	}

	// The allow-list still bounds everything: a pinned destination it
	// does not name is refused as before, and is no pin's business.
	uses = useRecorder{}
	e = &Egress{Allow: []string{pinned.addr()}, Pin: &Pin{Enforce: true, Dests: []string{other.addr()}, OnUse: uses.use}}
	if code, _ := get(e, other.addr()); code != http.StatusForbidden {
		t.Errorf("pinned but not allowed: %d", code)
	}
	if got := uses.got(); len(got) != 0 {
		t.Errorf("a destination the allow-list refused reached OnUse: %q", got)
	}
}

func TestCanonicalDest(t *testing.T) {
	for in, want := range map[string]string{
		"API.Example.com.:443": "api.example.com:443",
		"[::FFFF:127.0.0.1]:8": "127.0.0.1:8",
		"[2001:DB8::1]:443":    "[2001:db8::1]:443",
	} {
		if got, err := CanonicalDest(in); err != nil || got != want {
			t.Errorf("CanonicalDest(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"example.com", "*.example.com:443", "127.1:80", "a b:1"} {
		if _, err := CanonicalDest(bad); err == nil {
			t.Errorf("CanonicalDest(%q) accepted", bad)
		}
	}
}
