package monitor

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/mcpclient"
	"github.com/rugwatch/rugwatch/report"
	"github.com/rugwatch/rugwatch/signatures"
	"github.com/rugwatch/rugwatch/store"
	"github.com/rugwatch/rugwatch/testkit/testservers"
)

// countingListener is a real local HTTP listener that counts the requests
// it served.
type countingListener struct {
	*httptest.Server
	hits atomic.Int32
}

func newCountingListener(t *testing.T) *countingListener {
	t.Helper()
	c := &countingListener{}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		c.hits.Add(1)
		fmt.Fprintln(w, "ok")
	}))
	t.Cleanup(c.Close)
	return c
}

func (c *countingListener) dest() string { return c.Listener.Addr().String() }

// egressFixture is the egress test server (testservers.EgressMode) under
// the sandbox with network: egress and an allow-list of two real local
// listeners, polled through a Poller into a harness's store.
type egressFixture struct {
	t      *testing.T
	h      *harness
	a, b   *countingListener
	home   string
	poller *Poller
	spec   ServerSpec

	mu     sync.Mutex
	events []rugwatch.Event
}

func newEgressFixture(t *testing.T, pinned bool) *egressFixture {
	t.Helper()
	f := &egressFixture{t: t, h: newHarness(t), a: newCountingListener(t), b: newCountingListener(t)}
	f.home = filepath.Join(outsideTmp(t), "home")
	if err := os.MkdirAll(f.home, 0o755); err != nil {
		t.Fatal(err)
	}
	target := selfTarget(t, testservers.EgressMode, nil)
	target.Sandbox = mcpclient.Sandbox{Home: f.home, Egress: []string{f.a.dest(), f.b.dest()}, EgressPinned: pinned}
	f.poller = &Poller{Recorder: f.h.rec, Log: quietLog(), OnEvent: func(e rugwatch.Event) {
		f.mu.Lock()
		f.events = append(f.events, e)
		f.mu.Unlock()
	}}
	f.spec = ServerSpec{Name: "srv", Transport: mcpclient.TransportStdio, Timeout: 60 * time.Second,
		Resolve: func() (mcpclient.Target, error) { return target, nil }}
	return f
}

// poll makes the server fetch urls on its start, polls it once and
// returns the events recorded and what each fetch met.
func (f *egressFixture) poll(urls ...string) ([]rugwatch.Event, map[string]string) {
	f.t.Helper()
	if err := os.WriteFile(filepath.Join(f.home, testservers.EgressURLs), []byte(strings.Join(urls, "\n")+"\n"), 0o644); err != nil {
		f.t.Fatal(err)
	}
	logPath := filepath.Join(f.home, testservers.EgressLog)
	_ = os.Remove(logPath)
	f.mu.Lock()
	f.events = nil
	f.mu.Unlock()
	if err := f.poller.PollOne(pollCtx(f.t, 90*time.Second), f.spec); err != nil {
		f.t.Fatal(err)
	}
	rec := f.h.server()
	if !rec.Reachable || !rec.Sandboxed {
		f.t.Fatalf("poll: reachable=%v sandboxed=%v error=%q note=%q", rec.Reachable, rec.Sandboxed, rec.Error, rec.SandboxNote)
	}
	met := map[string]string{}
	b, _ := os.ReadFile(logPath)
	for line := range strings.Lines(string(b)) {
		if u, status, ok := strings.Cut(strings.TrimSpace(line), " "); ok {
			met[u] = status
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.events), met
}

// approve signs and stores the egress set `rugwatch approve --launch`
// would show, through the Ledger.
func (f *egressFixture) approve() {
	f.t.Helper()
	if err := approveEgressNow(f.h); err != nil {
		f.t.Fatal(err)
	}
}

func approveEgressNow(h *harness) error {
	rec := h.server()
	set := EgressToApprove(rec)
	if set == nil {
		return fmt.Errorf("nothing to approve: %+v", rec.Egress)
	}
	st, err := signatures.EgressStatement("srv", set, signatures.Review{Seq: rec.Egress.TransitionSeq, ApprovedAt: h.now})
	if err != nil {
		return err
	}
	env, err := h.signer.SignApproval(st)
	if err != nil {
		return err
	}
	_, err = h.ledger().Approve(context.Background(), "srv", []SignedApproval{{Kind: store.KindEgress, Digest: st.Digest, Envelope: env}}, false)
	return err
}

func collectURL(l *countingListener) string { return l.URL + "/collect" }

// TestEgressPinCatchesNewDestination is the attack: a server whose tools
// stay byte-identical starts sending data to a second destination its
// allow-list permits. With pinning, the first destination is pinned at
// approval; the second is egress.drifted (critical) and, with
// egress_mode: pinned, refused (the server sees a 403 and the listener
// nothing) until approved, then passes. With the protection off the
// second destination is reached without a word.
func TestEgressPinCatchesNewDestination(t *testing.T) {
	for _, pinned := range []bool{false, true} {
		for _, protected := range []bool{true, false} {
			t.Run(fmt.Sprintf("pinned=%v/protected=%v", pinned, protected), func(t *testing.T) {
				f := newEgressFixture(t, pinned)
				f.h.rec.egressPinOff = !protected
				_, met := f.poll(collectURL(f.a))
				if met[collectURL(f.a)] != "200" || f.a.hits.Load() != 1 {
					t.Fatalf("first poll: the server met %v, listener a served %d", met, f.a.hits.Load())
				}
				first := f.h.server()
				if first.Egress == nil || !slices.Equal(first.Egress.Seen, []string{f.a.dest()}) {
					t.Fatalf("first poll recorded egress %+v, want [%s]", first.Egress, f.a.dest())
				}
				f.approve()
				if ev, _ := f.poll(collectURL(f.a)); len(ev) != 0 {
					t.Fatalf("the approved destination again raised %v", eventTypes(ev))
				}

				ev, met := f.poll(collectURL(f.a), collectURL(f.b))
				after := f.h.server()
				for name, tr := range after.Tools {
					if tr.ObservedDigest != first.Tools[name].ObservedDigest {
						t.Fatalf("tool %s changed: the attack keeps every definition byte-identical", name)
					}
				}
				drift, drifted := findEvent(ev, rugwatch.EventEgressDrifted)
				if !protected {
					if drifted || met[collectURL(f.b)] != "200" || f.b.hits.Load() != 1 {
						t.Fatalf("without pinning the new destination should pass unnoticed: events %v, met %v, b served %d",
							eventTypes(ev), met, f.b.hits.Load())
					}
					return
				}
				if !drifted || drift.Severity != rugwatch.SeverityCritical || !strings.Contains(drift.Message, f.b.dest()) ||
					len(drift.Changes) != 1 || drift.Changes[0].Path != "/egress/"+f.b.dest() {
					t.Fatalf("events %+v, want one critical egress.drifted naming %s", ev, f.b.dest())
				}
				if rep := (report.Report{Servers: []report.ServerReport{report.ServerReportOf(after, mcpclient.TransportStdio)}}); rep.Clean() {
					t.Error("a report with drifted egress is clean")
				}
				if pinned {
					if met[collectURL(f.b)] != "403" || f.b.hits.Load() != 0 || !strings.Contains(drift.Message, "refused") {
						t.Fatalf("pinned: the server met %v and listener b served %d; want a 403 and nothing served", met, f.b.hits.Load())
					}
				} else if met[collectURL(f.b)] != "200" || f.b.hits.Load() != 1 {
					t.Fatalf("alert mode: the server met %v, b served %d; want it let through", met, f.b.hits.Load())
				}
				if ev, _ := f.poll(collectURL(f.a), collectURL(f.b)); len(ev) != 0 {
					t.Fatalf("the same drift was raised again: %v", eventTypes(ev))
				}

				f.approve()
				if got := f.h.server().Egress; got.PinnedDigest == "" || len(got.Drifted) != 0 || !slices.Contains(got.Pinned, f.b.dest()) {
					t.Fatalf("after approval the record says %+v", got)
				}
				hits := f.b.hits.Load()
				ev, met = f.poll(collectURL(f.a), collectURL(f.b))
				if len(ev) != 0 || met[collectURL(f.b)] != "200" || f.b.hits.Load() != hits+1 {
					t.Fatalf("after approval: events %v, the server met %v, b served %d (was %d)", eventTypes(ev), met, f.b.hits.Load(), hits)
				}
			})
		}
	}
}

// egressListing is a listing whose server used dests.
func egressListing(t *testing.T, dests ...string) *mcpclient.Listing {
	l := listingOf(t, replayBase)
	l.Sandboxed = true
	l.Egress = &mcpclient.EgressUse{Dests: []mcpclient.EgressDest{}}
	for _, d := range dests {
		l.Egress.Dests = append(l.Egress.Dests, mcpclient.EgressDest{Dest: d})
	}
	return l
}

// TestEgressPinTamperingFailsClosed: what the store says of a pin counts
// for nothing without the signed approval. A destination written into the
// record's pin is still a drift; an approval deleted, or swapped for
// another server's, is an approval.invalid event, and from then nothing
// counts as approved: every destination is drifted and the sandbox is
// handed an empty pin.
func TestEgressPinTamperingFailsClosed(t *testing.T) {
	const a, b = "api.example.com:443", "exfil.example.net:443"
	setup := func(t *testing.T) *harness {
		h := newHarness(t)
		h.record(egressListing(t, a), nil)
		if err := approveEgressNow(h); err != nil {
			t.Fatal(err)
		}
		if _, ev := h.record(egressListing(t, a), nil); len(ev) != 0 {
			t.Fatalf("approved destination raised %v", eventTypes(ev))
		}
		return h
	}
	update := func(t *testing.T, h *harness, fn func(tx *store.Tx) error) {
		if err := h.db.Update(fn); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("record edited", func(t *testing.T) {
		h := setup(t)
		update(t, h, func(tx *store.Tx) error {
			rec, _, err := tx.Server("srv")
			if err != nil {
				return err
			}
			rec.Egress.Pinned = append(rec.Egress.Pinned, b)
			return tx.PutServer(rec)
		})
		_, ev := h.record(egressListing(t, a, b), nil)
		if e, ok := findEvent(ev, rugwatch.EventEgressDrifted); !ok || !strings.Contains(e.Message, b) {
			t.Fatalf("a destination written into the record's pin passed: %v", eventTypes(ev))
		}
	})
	t.Run("approval deleted", func(t *testing.T) {
		h := setup(t)
		update(t, h, func(tx *store.Tx) error {
			_, _, err := tx.RevokeApproval("srv", store.KindEgress, "", "", time.Time{})
			return err
		})
		_, ev := h.record(egressListing(t, a), nil)
		inv, ok := findEvent(ev, rugwatch.EventApprovalInvalid)
		drift, drifted := findEvent(ev, rugwatch.EventEgressDrifted)
		if !ok || inv.Severity != rugwatch.SeverityCritical || !strings.Contains(inv.Message, "gone from the store") || !drifted || !strings.Contains(drift.Message, a) {
			t.Fatalf("events %+v: want approval.invalid and the once-approved destination drifted", ev)
		}
		if pin := h.rec.egressPinFor("srv"); pin == nil || len(pin.Dests) != 0 {
			t.Fatalf("the sandbox is handed pin %+v, want the empty set", pin)
		}
		if _, ev := h.record(egressListing(t, a), nil); len(ev) != 0 {
			t.Fatalf("raised again: %v", eventTypes(ev))
		}
	})
	t.Run("approval swapped", func(t *testing.T) {
		h := setup(t)
		st, err := signatures.EgressStatement("other", []string{a, b}, signatures.Review{ApprovedAt: h.now})
		if err != nil {
			t.Fatal(err)
		}
		env, err := h.signer.SignApproval(st)
		if err != nil {
			t.Fatal(err)
		}
		update(t, h, func(tx *store.Tx) error {
			return tx.PutApproval(store.ApprovalRecord{Kind: store.KindEgress, Server: "srv", Digest: st.Digest, KeyID: h.signer.KeyID(), ApprovedAt: h.now, Envelope: env})
		})
		_, ev := h.record(egressListing(t, a, b), nil)
		if _, ok := findEvent(ev, rugwatch.EventApprovalInvalid); !ok {
			t.Fatalf("another server's egress approval was taken: %v", eventTypes(ev))
		}
		if rec := h.server(); !slices.Equal(rec.Egress.Drifted, []string{a, b}) || !rec.Egress.PinMissing {
			t.Fatalf("record %+v: want both destinations drifted and the pin missing", rec.Egress)
		}
	})
}

// TestEgressBoundedPerServer: a server that makes up destinations (a
// wildcard on its allow-list lets it) grows no record without end: past
// the bound they are counted, and one event summarises them.
func TestEgressBoundedPerServer(t *testing.T) {
	h := newHarness(t)
	h.record(egressListing(t), nil)
	if err := approveEgressNow(h); err != nil {
		t.Fatal(err)
	}
	var dests []string
	for i := range signatures.MaxEgressDests + 40 {
		dests = append(dests, fmt.Sprintf("x%d.example.com:443", i))
	}
	l := egressListing(t, dests...)
	l.Egress.Dests = append(l.Egress.Dests, mcpclient.EgressDest{Dest: "Not Canonical:443"})
	l.Egress.Dropped = 1000
	_, ev := h.record(l, nil)
	rec := h.server()
	if len(rec.Egress.Seen) != signatures.MaxEgressDests || rec.Egress.Dropped != 1000+40+1 {
		t.Fatalf("seen %d, dropped %d", len(rec.Egress.Seen), rec.Egress.Dropped)
	}
	drift, ok := findEvent(ev, rugwatch.EventEgressDrifted)
	if !ok || len(ev) != 1 || len(drift.Changes) != maxEgressNamed || !strings.Contains(drift.Message, "1041 more destination(s) past the bound") {
		t.Fatalf("events %d, drift %q with %d changes", len(ev), drift.Message, len(drift.Changes))
	}
	if len(drift.Message) > 4096 {
		t.Errorf("the event message is %d bytes", len(drift.Message))
	}
	// The record is full: a new host past the bound is not remembered,
	// so every poll that reaches one says so, naming it (a server that
	// filled the record with made-up names cannot then reach a new host
	// unseen).
	_, ev = h.record(egressListing(t, "y.example.com:443"), nil)
	if drift, ok := findEvent(ev, rugwatch.EventEgressDrifted); !ok || !strings.Contains(drift.Message, "y.example.com:443") {
		t.Errorf("a new destination past the bound: events %v", eventTypes(ev))
	}
	// One the record already holds raises nothing again.
	if _, ev := h.record(egressListing(t, "x0.example.com:443"), nil); len(ev) != 0 {
		t.Errorf("a destination already recorded raised %v again", eventTypes(ev))
	}
}

// TestEgressFirstSightApproval: with approve_first_seen, the destinations
// a server is first seen using are signed by the daemon's key; a later
// new one is a drift.
func TestEgressFirstSightApproval(t *testing.T) {
	h := newHarness(t)
	h.rec.Signer = h.signer
	_, ev := h.record(egressListing(t, "api.example.com:443"), nil)
	if e, ok := findEvent(ev, rugwatch.EventEgressApproved); !ok || e.KeyID != h.signer.KeyID() {
		t.Fatalf("events %v: want egress.approved by the daemon's key", eventTypes(ev))
	}
	if rec := h.server(); rec.Egress.PinnedDigest == "" || rec.Egress.TransitionSeq == 0 {
		t.Fatalf("record %+v", rec.Egress)
	}
	_, ev = h.record(egressListing(t, "api.example.com:443", "exfil.example.net:443"), nil)
	if _, ok := findEvent(ev, rugwatch.EventEgressDrifted); !ok {
		t.Fatalf("a destination after first sight raised %v", eventTypes(ev))
	}
	if _, ok := findEvent(ev, rugwatch.EventEgressApproved); ok {
		t.Fatal("first sight approved a second time")
	}
}

// TestEgressApprovalBoundToState: an egress approval signed before a
// drift the approver did not see is refused, like a tool's.
func TestEgressApprovalBoundToState(t *testing.T) {
	h := newHarness(t)
	h.record(egressListing(t, "api.example.com:443"), nil)
	rec := h.server()
	st, err := signatures.EgressStatement("srv", EgressToApprove(rec), signatures.Review{Seq: rec.Egress.TransitionSeq, ApprovedAt: h.now})
	if err != nil {
		t.Fatal(err)
	}
	if err := approveEgressNow(h); err != nil {
		t.Fatal(err)
	}
	env, err := h.signer.SignApproval(st)
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.ledger().Approve(context.Background(), "srv", []SignedApproval{{Kind: store.KindEgress, Digest: st.Digest, Envelope: env}}, false)
	if err == nil || !strings.Contains(err.Error(), "run approve again") {
		t.Fatalf("a stale egress approval: %v", err)
	}
}
