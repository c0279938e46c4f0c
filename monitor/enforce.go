package monitor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/detect"
	"github.com/rugwatch/rugwatch/mcpclient"
	"github.com/rugwatch/rugwatch/signatures"
	"github.com/rugwatch/rugwatch/store"
)

// AllowedTool is one tool the proxy may show the model: exactly the
// definition the approver signed.
type AllowedTool struct {
	Name       string          `json:"name"`
	Digest     rugwatch.Digest `json:"digest"`
	Definition json.RawMessage `json:"definition"` // canonical JSON, as signed
	// ReturnsSecrets: every signature of its approval that counts says
	// it returns secrets by design (approve --returns-secrets); one
	// signature alone grants it only where one is all an approval needs.
	ReturnsSecrets bool `json:"returns_secrets,omitempty"`
}

// Allowed is what may reach the model from one server right now.
type Allowed struct {
	Server string        `json:"server"`
	Tools  []AllowedTool `json:"tools"` // sorted by name
	// Instructions are the approved server instructions (nil: none may
	// pass); InstructionsDigest their digest.
	Instructions       *string         `json:"instructions,omitempty"`
	InstructionsDigest rugwatch.Digest `json:"instructions_digest,omitempty"`
	// Version changes whenever the set or a definition does: the proxy
	// tells its client list_changed when it moves.
	Version string `json:"version"`
	// Drifted names the pinned identities of the server that no longer
	// hold ("launch": what runs for a stdio server; "identity": who
	// answers for a remote one). While any does, no tool and no
	// instructions pass, whatever their approvals say: the approvals were
	// given to what ran or answered then, and an impostor serving the
	// same definitions must not inherit them. `rugwatch approve SERVER
	// --launch` pins again.
	Drifted []string `json:"drifted,omitempty"`
	// Withheld is the state of every recorded tool that does not pass
	// (approved for one whose approval did not verify, or while Drifted),
	// so that the proxy can tell its client why tools are missing.
	Withheld map[string]rugwatch.State `json:"withheld,omitempty"`
	// EgressPin is the server's verified egress approval, for the sandbox
	// of the proxy's upstream (egress.go); nil while none was approved.
	EgressPin *mcpclient.EgressPin `json:"egress_pin,omitempty"`
	// ReadAt is when the set was read from the store: a proxy bounding
	// how stale a set it serves may be (proxy.max_staleness) counts from
	// here, however many caches the set went through since.
	ReadAt time.Time `json:"read_at,omitzero"`
	// Seq is the event log's last seq in the snapshot the set was read
	// from. Every approval, revocation and drift appends an event, so of
	// two readings the one with the lower Seq may predate a change the
	// other shows: a proxy holding a reading never installs an older one
	// that finished after it (a read in flight across a revocation).
	Seq uint64 `json:"seq,omitempty"`
}

// Tool returns the allowed tool called name.
func (a Allowed) Tool(name string) (AllowedTool, bool) {
	i := sort.Search(len(a.Tools), func(i int) bool { return a.Tools[i].Name >= name })
	if i < len(a.Tools) && a.Tools[i].Name == name {
		return a.Tools[i], true
	}
	return AllowedTool{}, false
}

// Enforce records a listing the proxy took upstream through the same
// Recorder as a poll — a drift it saw is an event and an alert at once —
// and returns what may pass now. A launch or identity drift the listing
// shows is recorded before what may pass is read, so the very listing
// that shows an impostor serves nothing.
func (l *Ledger) Enforce(ctx context.Context, server string, listing *mcpclient.Listing) (Allowed, error) {
	return l.enforce(ctx, server, listing, nil)
}

// Observed is a Ledger that also hands every event the proxy's
// recordings store (Enforce, FlagResult) to OnEvent once it is stored, as
// Poller.OnEvent does for polls: the daemon counts both in
// rugwatch_events_total. Every other method is the Ledger's.
type Observed struct {
	*Ledger
	OnEvent func(rugwatch.Event)
}

// Enforce is Ledger.Enforce, telling OnEvent what it recorded.
func (o Observed) Enforce(ctx context.Context, server string, listing *mcpclient.Listing) (Allowed, error) {
	return o.enforce(ctx, server, listing, o.OnEvent)
}

// FlagResult is Ledger.FlagResult, telling OnEvent what it recorded.
func (o Observed) FlagResult(ctx context.Context, server, tool string, findings []rugwatch.Finding, blocked bool) error {
	return o.flagResult(ctx, server, tool, findings, blocked, o.OnEvent)
}

func tell(onEvent func(rugwatch.Event), events []rugwatch.Event) {
	if onEvent == nil {
		return
	}
	for _, e := range events {
		onEvent(e)
	}
}

func (l *Ledger) enforce(ctx context.Context, server string, listing *mcpclient.Listing, onEvent func(rugwatch.Event)) (Allowed, error) {
	ref, ok := l.server(server)
	if !ok {
		return Allowed{}, usagef("no server %q in %s (configured: %s)", server, l.Where, l.serverNames())
	}
	if l.Recorder == nil {
		return Allowed{}, fmt.Errorf("this backend cannot record listings")
	}
	// The listing may have crossed the control socket: every digest is
	// taken again from the raw bytes, never believed.
	for i, t := range listing.Tools {
		d, canon, err := signatures.Digest(t.Raw, signatures.Limits{})
		if err != nil {
			return Allowed{}, fmt.Errorf("tool %d of the listing: %w", i, err)
		}
		var named struct {
			Name string `json:"name"`
		}
		if err := json.Unmarshal(canon, &named); err != nil || named.Name != t.Name {
			return Allowed{}, fmt.Errorf("tool %d of the listing is not named %q", i, t.Name)
		}
		listing.Tools[i].Digest, listing.Tools[i].Canonical = d, canon
	}
	if listing.Instructions != nil {
		raw, _ := json.Marshal(*listing.Instructions)
		d, _, err := signatures.Digest(raw, signatures.Limits{})
		if err != nil {
			return Allowed{}, fmt.Errorf("the listing's instructions: %w", err)
		}
		listing.InstructionsDigest = d
	}
	sort.Slice(listing.Tools, func(i, j int) bool { return listing.Tools[i].Name < listing.Tools[j].Name })
	cloaked, err := l.cloaking(ctx, server, listing)
	if err != nil {
		return Allowed{}, err
	}
	tell(onEvent, cloaked)
	_, events, err := l.Recorder.RecordContext(ctx, server, ref.Transport, listing, nil)
	if err != nil {
		return Allowed{}, fmt.Errorf("recording the proxy's listing of %s: %w", server, err)
	}
	tell(onEvent, events)
	if err := l.afterWrite(ctx); err != nil {
		return Allowed{}, err
	}
	return l.Allowed(ctx, server)
}

// cloaking raises tool.cloaked (critical) for every tool the proxy is
// shown differently from the poll of the same revision within the last
// minute: the revision says a tool list must not vary per connection, and
// a server that shows its watcher one thing and the model another is
// hiding a rug pull from the watcher.
func (l *Ledger) cloaking(ctx context.Context, server string, listing *mcpclient.Listing) ([]rugwatch.Event, error) {
	diff := l.Sightings.Cloaked(server, listing, l.now())
	if len(diff) == 0 {
		return nil, nil
	}
	var events []rugwatch.Event
	err := l.DB.UpdateContext(ctx, func(tx *store.Tx) error {
		events = events[:0]
		for _, name := range slices.Sorted(maps.Keys(diff)) {
			var shown rugwatch.Digest
			if t, ok := listing.Tool(name); ok {
				shown = t.Digest
			}
			msg := fmt.Sprintf("the proxy was shown %s, the poll of the last minute %s, at the same revision", digestOrAbsent(shown), digestOrAbsent(diff[name]))
			e := rugwatch.Event{Type: rugwatch.EventToolCloaked, Severity: rugwatch.SeverityCritical,
				Server: server, Tool: name, ObservedDigest: shown, OccurredAt: l.now(), Message: msg}
			if err := l.appendEvent(tx, &e); err != nil {
				return err
			}
			events = append(events, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("recording cloaked tools of %s: %w", server, err)
	}
	return events, nil
}

func digestOrAbsent(d rugwatch.Digest) string {
	if d == "" {
		return "no such tool"
	}
	return string(d)
}

// Allowed returns the tools of server whose last observed definition
// matches a current approval that verifies, with the signed definition:
// pending, drifted, revoked and removed tools are not among them. Anything
// that cannot be read or verified leaves a tool out; the proxy fails
// closed.
func (l *Ledger) Allowed(ctx context.Context, server string) (Allowed, error) {
	if _, ok := l.server(server); !ok {
		return Allowed{}, usagef("no server %q in %s (configured: %s)", server, l.Where, l.serverNames())
	}
	out := Allowed{Server: server, Tools: []AllowedTool{}, ReadAt: time.Now()}
	err := l.DB.ViewContext(ctx, func(tx *store.Tx) error {
		var err error
		if out.Seq, err = tx.LastSeq(); err != nil {
			return err
		}
		rec, ok, err := tx.Server(server)
		if err != nil || !ok {
			return err
		}
		out.Drifted = pinDrifts(rec)
		out.Withheld = map[string]rugwatch.State{}
		if out.EgressPin, err = l.egressPin(tx, server, rec); err != nil {
			return err
		}
		for name, t := range rec.Tools {
			if len(out.Drifted) == 0 {
				at, ok, err := l.allowedTool(tx, server, name, t)
				if err != nil {
					return err
				}
				if ok {
					out.Tools = append(out.Tools, at)
					continue
				}
			}
			out.Withheld[name] = t.State
		}
		if len(out.Drifted) > 0 {
			return nil // no instructions either: they come from the same impostor
		}
		if rec.InstructionsState == rugwatch.StateApproved && rec.InstructionsDigest == rec.InstructionsApproved {
			ap, ok, err := tx.Approval(server, store.KindInstructions, "")
			if err != nil {
				return err
			}
			if ok && ap.Digest == rec.InstructionsDigest {
				// As for tools, only an approval that meets the quorum
				// lets the instructions pass.
				if v := l.Verified.WithDefinition(l.Verifier, ap); v.Valid && meets(l.quorum(), server, v.Signers) {
					var text string
					if json.Unmarshal(v.Definition, &text) == nil {
						out.Instructions, out.InstructionsDigest = &text, ap.Digest
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		return Allowed{Server: server, Tools: []AllowedTool{}}, err
	}
	sort.Slice(out.Tools, func(i, j int) bool { return out.Tools[i].Name < out.Tools[j].Name })
	h := sha256.New()
	for _, t := range out.Tools {
		fmt.Fprintf(h, "%s\x00%s\x00", t.Name, t.Digest)
	}
	fmt.Fprintf(h, "instructions\x00%s", out.InstructionsDigest)
	if len(out.Drifted) > 0 {
		// A drift that empties an already empty set still moves the
		// version: the client lists again and hears why.
		fmt.Fprintf(h, "\x00drifted\x00%s", strings.Join(out.Drifted, ","))
	}
	out.Version = hex.EncodeToString(h.Sum(nil)[:12])
	return out, nil
}

// pinDrifts names the pinned identities of rec that no longer hold.
func pinDrifts(rec store.ServerRecord) []string {
	var out []string
	if rec.LaunchDrifted {
		out = append(out, DriftLaunch)
	}
	if rec.IdentityDrifted {
		out = append(out, DriftIdentity)
	}
	if rec.Egress != nil && (len(rec.Egress.Drifted) > 0 || rec.Egress.PinMissing) {
		out = append(out, DriftEgress)
	}
	return out
}

// What Allowed.Drifted names.
const (
	DriftLaunch   = "launch"   // launch.drifted: what runs for a stdio server changed
	DriftIdentity = "identity" // identity.drifted: who answers for a remote server changed
	DriftEgress   = "egress"   // egress.drifted: a stdio server went where it was not approved to
)

// allowedTool returns t as it may pass: its observed definition matches a
// current approval whose signature verifies.
func (l *Ledger) allowedTool(tx *store.Tx, server, name string, t store.ToolRecord) (AllowedTool, bool, error) {
	if t.State != rugwatch.StateApproved || t.ObservedDigest == "" || t.ObservedDigest != t.ApprovedDigest {
		return AllowedTool{}, false, nil
	}
	ap, ok, err := tx.Approval(server, store.KindTool, name)
	if err != nil || !ok || ap.Digest != t.ObservedDigest {
		return AllowedTool{}, false, err
	}
	// Only an approval that meets its server's quorum lets a tool pass:
	// the state says approved, but a quorum raised since counts too.
	if v := l.Verified.WithDefinition(l.Verifier, ap); v.Valid && len(v.Definition) > 0 && meets(l.quorum(), server, v.Signers) {
		return AllowedTool{Name: name, Digest: ap.Digest, Definition: v.Definition, ReturnsSecrets: v.Grants.ReturnsSecrets}, true, nil
	}
	return AllowedTool{}, false, nil
}

// FlagResult records that a tool result carried poisoning (blocked: the
// proxy withheld it), as a result.flagged event with its findings.
func (l *Ledger) FlagResult(ctx context.Context, server, tool string, findings []rugwatch.Finding, blocked bool) error {
	return l.flagResult(ctx, server, tool, findings, blocked, nil)
}

func (l *Ledger) flagResult(ctx context.Context, server, tool string, findings []rugwatch.Finding, blocked bool, onEvent func(rugwatch.Event)) error {
	if _, ok := l.server(server); !ok {
		return usagef("no server %q in %s (configured: %s)", server, l.Where, l.serverNames())
	}
	if !l.Notices.First(server, tool, findings, l.now()) {
		return nil // recorded within the hour: the event said it then
	}
	msg := "a tool result carried text the poisoning rules flag; it reached the model"
	if blocked {
		msg = "a tool result carried text the poisoning rules flag; the proxy withheld it"
	}
	e := rugwatch.Event{Type: rugwatch.EventResultFlagged, Severity: detect.MaxSeverity(findings), Server: server, Tool: tool,
		Findings: findings, OccurredAt: l.now(), Message: msg}
	err := l.DB.UpdateContext(ctx, func(tx *store.Tx) error { return l.appendEvent(tx, &e) })
	if err != nil {
		l.Notices.Forget(server, tool, findings)
		return err
	}
	tell(onEvent, []rugwatch.Event{e})
	if l.AfterNotice != nil {
		return l.AfterNotice(ctx)
	}
	return l.afterWrite(ctx)
}

// VerifiedCache is the one cache of approval verdicts: it remembers
// approvals whose signature held, so that neither the Recorder (every
// poll re-reads a server's approvals) nor the Ledger (the proxy's reads
// of what may pass) re-verifies every ed25519 signature each time. An
// entry is keyed by the hash of the envelope and the record around it
// (edited bytes are checked again) and belongs to one Verifier: a reload
// that changes the trusted keys starts the cache afresh.
//
// It keeps verdicts, not definitions: a fleet's 500,000 approvals would
// otherwise hold every approved definition in memory a second time.
// WithDefinition decodes the definition from the very envelope bytes the
// verdict was reached for, which costs a decode, not a signature check.
// Safe for concurrent use; the zero value is ready.
type VerifiedCache struct {
	mu  sync.Mutex
	ver Verifier
	m   map[[32]byte]Approved
}

// maxVerified bounds the cache: past it, it starts afresh.
const maxVerified = 1 << 20

// Check is CheckApproval through the cache, without the definition; a
// nil cache checks every time.
func (c *VerifiedCache) Check(v Verifier, a store.ApprovalRecord) Approved {
	if c == nil {
		out := CheckApproval(v, a)
		out.Definition = nil
		return out
	}
	key := approvalHash(a)
	c.mu.Lock()
	if c.ver != v {
		c.ver, c.m = v, nil
	}
	hit, ok := c.m[key]
	c.mu.Unlock()
	if ok {
		return hit
	}
	out := CheckApproval(v, a)
	out.Definition = nil
	if out.Valid {
		c.mu.Lock()
		if c.ver == v {
			if c.m == nil || len(c.m) >= maxVerified {
				c.m = map[[32]byte]Approved{}
			}
			c.m[key] = out
		}
		c.mu.Unlock()
	}
	return out
}

// WithDefinition is Check with the signed definition.
func (c *VerifiedCache) WithDefinition(v Verifier, a store.ApprovalRecord) Approved {
	out := c.Check(v, a)
	if !out.Valid {
		return out
	}
	st, err := signatures.StatementOf(a.Envelope)
	if err != nil {
		// Verified a moment ago, so this cannot happen; if it does, the
		// approval counts as none rather than serve nothing as approved.
		return Approved{Digest: a.Digest, Problem: err.Error()}
	}
	out.Definition = st.Definition
	return out
}
