package monitor

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/detect"
	"github.com/rugwatch/rugwatch/mcpclient"
	"github.com/rugwatch/rugwatch/report"
	"github.com/rugwatch/rugwatch/signatures"
	"github.com/rugwatch/rugwatch/store"
)

// Verifier checks a signed approval envelope.
type Verifier interface {
	Verify(envelope []byte) (signatures.Statement, error)
}

// Signer signs approvals; only approve_first_seen gives the monitor one.
type Signer interface {
	SignApproval(st signatures.Statement) ([]byte, error)
	KeyID() string
}

// Recorder writes polls into the store: one transaction per server holds
// the new record, every approval drift withdrew and every event.
type Recorder struct {
	DB       *store.DB
	Verifier Verifier
	Signer   Signer // nil unless approve_first_seen
	// Policy is how many signatures, of which roles, an approval needs
	// (nil: one by any trusted key).
	Policy           *signatures.Policy
	UnreachableAfter int
	Now              func() time.Time
	// MaxNewToolsPerHour is limits.max_new_tools_per_hour (0: the
	// default); see churn.go.
	MaxNewToolsPerHour int
	// ConfigFindings, when set, gives what a server's configuration alone
	// raises (Input.ConfigFindings).
	ConfigFindings func(server string) []rugwatch.Finding
	// InTx, when set, runs for every event right after it is appended,
	// inside the same transaction: the alert outbox queues its deliveries
	// there, so a crash can never record a drift and lose its alerts.
	InTx func(tx *store.Tx, e rugwatch.Event) error
	// Chain, when set, is checked after every recorded poll, continuing
	// from the head it verified last, so a log cut or rolled back under a
	// running daemon is noticed at the next poll; ChainBroken hears of
	// each distinct break once.
	Chain       *store.ChainTracker
	ChainBroken func(error)
	// Log, when set, hears once per server (and again when the reason
	// changes) that a stdio server ran unsandboxed, and why.
	Log *slog.Logger

	sandboxMu     sync.Mutex
	sandboxWarned map[string]string // server → the note last logged

	// mu guards the caches below. Polls are recorded through the store's
	// group commit (DB.Batch), whose functions run one after another in
	// one goroutine, so it is never contended there; it orders them with
	// the reset that follows a failed batch.
	mu sync.Mutex

	// Classify, when set, adds an external classifier's findings to each
	// new or changed definition's (see Classifier).
	Classify func(server string, t mcpclient.Tool) []rugwatch.Finding

	// index is every server's tool names, for shadowing findings. It is
	// read by findings computed outside the write transaction and changed
	// only inside it, under idxMu.
	idxMu sync.RWMutex
	index *detect.ToolIndex
	// memo remembers the text rules' findings in the short strings that
	// repeat across a fleet's definitions (member names, parameter
	// descriptions).
	memo detect.TextMemo
	// Verified caches verdicts on approvals (shared with the Ledger in
	// one process): a fleet's approvals are re-read on every poll, and
	// ed25519 would otherwise dominate a steady-state cycle. Nil: the
	// Recorder keeps one of its own.
	Verified    *VerifiedCache
	ownVerified VerifiedCache
	// withdrawn is, per server NUL tool ("" for the instructions), the
	// seq of the newest drift or revocation in the event log, folded in
	// incrementally (scanned is the newest seq read). It is the
	// hash-chained log's word, not the tool record's, so an edited record
	// cannot lower it. Only touched inside the store's write transaction.
	withdrawn map[string]uint64
	scanned   uint64
	// distrustThrough, when set, is the seq of an event-log checkpoint
	// whose signature does not hold: what the cut took is unknown, so an
	// approval bound at or before it counts as none (retention.go).
	distrustThrough uint64
	// legacy caches, per approval hash, the seq of the tool.approved event
	// of an envelope signed before approvals were bound.
	legacy map[[32]byte]uint64
	// recorded counts polls, to give back the pages of the mapped store
	// they read every releaseEvery of them (see store.DB.ReleaseMapped):
	// a cycle reads every server's record once, and would otherwise end
	// with the whole file resident.
	recorded atomic.Uint64
	// replayCheckOff is set only by tests, to show the replay attack the
	// check stops succeeding without it.
	replayCheckOff bool
	// checkpointSeedOff is set only by tests: the replay check then
	// ignores what the event log's checkpoint says of the events cut.
	checkpointSeedOff bool
	// egressLog is what the event log says of egress approvals, folded in
	// with withdrawn (egress.go); egressPinOff is set only by tests, to
	// show what a server's new destination gets past without pinning.
	egressLog    egressLog
	egressPinOff bool
	// stateApprovalsOff is set only by tests: the unchanged-listing fast
	// path's state digest then leaves out the approvals, to show what
	// slips through without them (unchanged.go).
	stateApprovalsOff bool
}

// releaseEvery is how many recorded polls pass between releases of the
// store's mapped pages: a few MiB of records, and a madvise call that
// costs microseconds.
const releaseEvery = 128

// approvalHash identifies an approval record by what it claims and the
// exact envelope bytes.
func approvalHash(a store.ApprovalRecord) [32]byte {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00", a.Kind, a.Server, a.Tool, a.Digest)
	h.Write(a.Envelope)
	for _, c := range a.Cosignatures {
		fmt.Fprintf(h, "\x00%d\x00", len(c.Envelope))
		h.Write(c.Envelope)
	}
	var key [32]byte
	copy(key[:], h.Sum(nil))
	return key
}

// refreshWithdrawn folds the events appended since the last call into
// r.withdrawn.
func (r *Recorder) refreshWithdrawn(tx *store.Tx) error {
	if r.withdrawn == nil {
		r.withdrawn = map[string]uint64{}
		if err := r.seedWithdrawn(tx); err != nil {
			return err
		}
	}
	return tx.Transitions(r.scanned, func(tr store.Transition) error {
		r.egressLog.note(tr)
		if ok, withdraws := tr.Moves(); ok && withdraws {
			key := tr.Server + "\x00" + tr.Tool
			r.withdrawn[key] = max(r.withdrawn[key], tr.Seq)
		}
		r.scanned = max(r.scanned, tr.Seq)
		return nil
	})
}

// replayed says why a verified current approval must not count: the tool
// (or the instructions) was drifted or revoked after the state the
// approval was signed for, so the envelope is an old one put back (from
// the history, or a copy of it) or sent again. "" when it may count.
func (r *Recorder) replayed(tx *store.Tx, a store.ApprovalRecord, ap Approved, prev store.ServerRecord) (string, error) {
	if r.replayCheckOff {
		return "", nil
	}
	what := "the tool"
	withdrawn := r.withdrawn[a.Server+"\x00"+a.Tool]
	if a.Kind == store.KindInstructions {
		what = "the server instructions"
		withdrawn = max(withdrawn, prev.InstructionsWithdrawnSeq)
	} else {
		withdrawn = max(withdrawn, prev.Tools[a.Tool].WithdrawnSeq)
	}
	if r.distrustThrough > 0 && (ap.Resolves == nil || *ap.Resolves <= r.distrustThrough) {
		return fmt.Sprintf("the event log's checkpoint at seq %d does not verify, so whether %s drifted before it is unknown; "+
			"an approval bound at or before it counts as none until approved again (run `rugwatch verify`)", r.distrustThrough, what), nil
	}
	if withdrawn == 0 {
		return "", nil
	}
	if ap.Resolves != nil {
		if *ap.Resolves >= withdrawn {
			return "", nil
		}
		return fmt.Sprintf("replayed approval: signed for %s as it stood at seq %d, but it was drifted or revoked at seq %d; "+
			"the approval counts as none and is back in the history", what, *ap.Resolves, withdrawn), nil
	}
	// Signed before approvals named the seq they resolve: it counts only
	// if it was recorded after the newest drift or revocation.
	key := approvalHash(a)
	bound, ok := r.legacy[key]
	if !ok {
		var err error
		if bound, err = tx.LastApprovedSeq(a.Server, a.Tool, a.Digest); err != nil {
			return "", err
		}
		if r.legacy == nil || len(r.legacy) > 1<<16 {
			r.legacy = map[[32]byte]uint64{}
		}
		r.legacy[key] = bound
	}
	if bound > withdrawn {
		return "", nil
	}
	return fmt.Sprintf("replayed approval: an approval without a bound seq (signed by an older rugwatch), last recorded at seq %d, "+
		"but %s was drifted or revoked at seq %d; the approval counts as none and is back in the history", bound, what, withdrawn), nil
}

// Replays lists the current approvals whose signature holds but which the
// Recorder withdraws as replayed at the next poll (signed for a state
// older than the newest drift or revocation of what they approve), for
// `verify` to report before that poll runs.
func Replays(tx *store.Tx, v Verifier) ([]report.BadApproval, error) {
	r := &Recorder{Verifier: v}
	if err := r.refreshWithdrawn(tx); err != nil {
		return nil, err
	}
	all, err := tx.Approvals("")
	if err != nil {
		return nil, err
	}
	var out []report.BadApproval
	for _, a := range all {
		ap := CheckApproval(v, a)
		if !ap.Valid || a.Kind == store.KindEgress || a.Kind == store.KindLaunch {
			// An egress pin only grows: no replay to find (egress.go). A
			// launch approval counts only when given (approveLaunch).
			continue
		}
		rec, _, err := tx.Server(a.Server)
		if err != nil {
			return nil, err
		}
		problem, err := r.replayed(tx, a, ap, rec)
		if err != nil {
			return nil, err
		}
		if problem != "" {
			out = append(out, report.BadApproval{Server: a.Server, Kind: a.Kind, Tool: a.Tool, Problem: problem})
		}
	}
	return out, nil
}

// check is CheckApproval through the cache of verdicts, without the
// definition: only a drift diffs against it (withDefinition).
func (r *Recorder) check(a store.ApprovalRecord) Approved {
	return r.verifiedCache().Check(r.Verifier, a)
}

// withDefinition is check with the signed definition.
func (r *Recorder) withDefinition(a store.ApprovalRecord) Approved {
	return r.verifiedCache().WithDefinition(r.Verifier, a)
}

func (r *Recorder) verifiedCache() *VerifiedCache {
	if r.Verified != nil {
		return r.Verified
	}
	return &r.ownVerified
}

// observedDigests is what l shows for the subjects of approvals: each
// tool's digest by name, the instructions' under "" (a tool needs a
// name). Nil for no listing.
func observedDigests(l *mcpclient.Listing) map[string]rugwatch.Digest {
	if l == nil {
		return nil
	}
	out := make(map[string]rugwatch.Digest, len(l.Tools)+1)
	for _, t := range l.Tools {
		out[t.Name] = t.Digest
	}
	out[""] = l.InstructionsDigest
	return out
}

// resetCaches forgets everything learnt inside transactions, after one
// rolled back; the next poll rebuilds from what the file holds.
func (r *Recorder) resetCaches() {
	r.idxMu.Lock()
	r.index = nil
	r.idxMu.Unlock()
	r.withdrawn = nil
	r.scanned = 0
	r.legacy = nil
	r.egressLog.reset()
}

// needsFindings reports whether a listing has a definition that is new
// or changed since prev: only those get findings, and only findings read
// the index of every server's tool names.
func needsFindings(prev store.ServerRecord, l *mcpclient.Listing, pre map[string]Precomputed) bool {
	if l == nil {
		return false
	}
	for _, t := range l.Tools {
		if old, ok := prev.Tools[t.Name]; !ok || old.ObservedDigest != t.Digest {
			if p, ok := pre[t.Name]; !ok || p.Digest != t.Digest {
				return true
			}
		}
	}
	return false
}

func liveTools(tools map[string]rugwatch.State) []string {
	out := make([]string, 0, len(tools))
	for n, st := range tools {
		if st != rugwatch.StateRemoved {
			out = append(out, n)
		}
	}
	return out
}

func toolNames(r store.ServerRecord) []string {
	out := make([]string, 0, len(r.Tools))
	for n, t := range r.Tools {
		if t.State != rugwatch.StateRemoved {
			out = append(out, n)
		}
	}
	return out
}

// Record evaluates one poll of one server and stores the outcome. It
// returns the stored record and the events, with their ids and sequence
// numbers.
func (r *Recorder) Record(server, transport string, l *mcpclient.Listing, pollErr error) (store.ServerRecord, []rugwatch.Event, error) {
	return r.RecordContext(context.Background(), server, transport, l, pollErr)
}

// RecordContext is Record for a caller that cannot wait past ctx (a
// proxy bounding how long it serves a set it cannot confirm): on a
// shared store whose database stops answering, the reads and the write
// end with ctx, the write rolled back. With a deadline, the write is a
// transaction of its own rather than one of a group commit, which no one
// caller may cut short.
func (r *Recorder) RecordContext(ctx context.Context, server, transport string, l *mcpclient.Listing, pollErr error) (store.ServerRecord, []rugwatch.Event, error) {
	now := time.Now().UTC()
	if r.Now != nil {
		now = r.Now().UTC()
	}
	var (
		out  Outcome
		pre  map[string]Precomputed
		need []mcpclient.Tool
	)
	if l != nil && !l.Unchanged {
		// New or changed definitions are found in a read transaction, so
		// a poll that has some does not take the write lock only to learn
		// it must first compute their findings.
		var prev store.ServerRecord
		if err := r.DB.ViewContext(ctx, func(tx *store.Tx) error {
			var err error
			prev, _, err = tx.ServerStates(server)
			return err
		}); err != nil {
			return store.ServerRecord{}, nil, fmt.Errorf("recording poll of %s: %w", server, err)
		}
		if changed := r.changedTools(prev, l, now); changed != nil {
			pre = r.findingsFor(server, changed)
		}
	}
	for attempt := 0; ; attempt++ {
		var err error
		// Asked again inside the write only if nothing was computed: a
		// definition may have changed since (another poll of the server).
		out, need, err = r.record(ctx, server, transport, l, pollErr, now, pre, attempt == 0)
		if err != nil {
			return store.ServerRecord{}, nil, err
		}
		if need == nil {
			break
		}
		// New or changed definitions: their findings (regular expressions
		// over every string, the costliest part of a first sight) are
		// computed here, in parallel with other polls, and the poll is
		// recorded again with them.
		pre = r.findingsFor(server, need)
	}
	if r.Chain != nil {
		r.Chain.Check(r.ChainBroken)
	}
	if l != nil {
		r.warnUnsandboxed(server, l.SandboxNote)
	}
	if r.recorded.Add(1)%releaseEvery == 0 {
		// Only memory accounting is at stake; the poll is recorded.
		if err := r.DB.ReleaseMapped(); err != nil && r.Log != nil {
			r.Log.Debug("releasing mapped store pages", "error", err)
		}
	}
	return out.Server, out.Events, nil
}

// findingsFor computes the findings of tools, for Input.Findings.
func (r *Recorder) findingsFor(server string, tools []mcpclient.Tool) map[string]Precomputed {
	r.idxMu.RLock()
	idx := r.index
	r.idxMu.RUnlock()
	if idx == nil {
		built := detect.NewToolIndex(nil)
		err := r.DB.View(func(tx *store.Tx) error {
			return tx.ServerTools(func(name string, tools map[string]rugwatch.State) error {
				built.SetServer(name, liveTools(tools))
				return nil
			})
		})
		if err != nil {
			return nil // computed inside the transaction instead
		}
		r.idxMu.Lock()
		if r.index == nil {
			r.index = built
		}
		r.idxMu.Unlock()
	}
	r.idxMu.RLock()
	defer r.idxMu.RUnlock()
	fc := detect.FindingContext{Server: server, Index: r.index, Memo: &r.memo}
	out := make(map[string]Precomputed, len(tools))
	for _, t := range tools {
		fs := detect.Findings(t.Canonical, fc)
		if r.Classify != nil {
			// Outside any transaction, once per new or changed definition.
			fs = append(fs, r.Classify(server, t)...)
		}
		out[t.Name] = Precomputed{Digest: t.Digest, Findings: fs}
	}
	return out
}

// record is one attempt at recording a poll. With ask set, a poll with
// new or changed definitions and no precomputed findings writes nothing
// and returns those tools, for Record to compute their findings first.
//
// It runs in four steps inside one group commit: gather what the store
// says (the record, the verified approvals, the index of tool names),
// decide (Evaluate, a pure function of that), apply the decision (revoke,
// emit, sign first-sight approvals, queue alerts), and persist the
// record.
func (r *Recorder) record(ctx context.Context, server, transport string, l *mcpclient.Listing, pollErr error, now time.Time,
	pre map[string]Precomputed, ask bool) (Outcome, []mcpclient.Tool, error) {
	var (
		out   Outcome
		need  []mcpclient.Tool
		stale bool
	)
	// One group commit holds this poll's record, its events and their
	// deliveries with those of the polls recorded beside it: all of them
	// reach the file, or none.
	write := r.DB.Batch
	if _, bounded := ctx.Deadline(); bounded {
		write = func(fn func(*store.Tx) error) error { return r.DB.UpdateContext(ctx, fn) }
	}
	err := write(func(tx *store.Tx) (err error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		defer func() {
			if err != nil {
				// This transaction rolls back: forget what the caches
				// learnt from it (events, seqs, tool names it wrote).
				r.resetCaches()
			}
		}()
		out, need = Outcome{Server: store.ServerRecord{Name: server, Transport: transport}}, nil
		if l != nil && l.Unchanged {
			stale, err = r.recordUnchangedPoll(tx, server, l, now, &out)
			return err
		}
		out = Outcome{}
		prev, found, err := tx.Server(server)
		if err != nil {
			return err
		}
		if ask && pre == nil {
			// Found changed since Record looked (changedTools): their
			// findings are computed outside the lock, then this again.
			if need = r.changedTools(prev, l, now); need != nil {
				return nil
			}
		}
		in, replays, err := r.gather(tx, Input{
			Server: server, Transport: transport, Listing: l, PollErr: pollErr, Now: now,
			UnreachableAfter: r.UnreachableAfter, FirstSight: r.Signer != nil, Findings: pre,
			MaxNewToolsPerHour: r.maxNewTools(),
		}, prev, found)
		if err != nil {
			return err
		}
		out = r.decide(in, replays, prev)
		if err := r.apply(tx, in, &out); err != nil {
			return err
		}
		if err := r.queueAlerts(tx, &out, !found, now); err != nil {
			return err
		}
		return r.persist(tx, in, prev, found, &out)
	})
	if err != nil {
		r.mu.Lock()
		r.resetCaches() // the batch may have failed at its commit
		r.mu.Unlock()
		return Outcome{}, nil, fmt.Errorf("recording poll of %s: %w", server, err)
	}
	if stale {
		return Outcome{}, nil, fmt.Errorf("recording poll of %s: %w", server, ErrListingStale)
	}
	return out, need, nil
}

// changedTools lists the tools of l that are new or changed since prev:
// the ones whose findings must be computed. The new names of a listing
// the churn rule summarises are not: they will not be recorded.
func (r *Recorder) changedTools(prev store.ServerRecord, l *mcpclient.Listing, now time.Time) []mcpclient.Tool {
	if l == nil {
		return nil
	}
	churn := decideChurn(prev.Churn, prev.Tools, l, now, r.maxNewTools())
	var need []mcpclient.Tool
	for _, t := range l.Tools {
		if churn.skips(prev.Tools, t.Name) {
			continue
		}
		if old, ok := prev.Tools[t.Name]; !ok || old.ObservedDigest != t.Digest {
			need = append(need, t)
		}
	}
	return need
}

// recordUnchangedPoll records a listing identical to the last one
// (unchanged.go): nothing to evaluate, but what the sandbox refused the
// server this poll is news.
func (r *Recorder) recordUnchangedPoll(tx *store.Tx, server string, l *mcpclient.Listing, now time.Time, out *Outcome) (stale bool, err error) {
	stale, err = r.recordUnchanged(tx, server, l, now)
	if err != nil || stale {
		return stale, err
	}
	if err := r.recordUnchangedEgress(tx, server, l, now, out); err != nil {
		return false, err
	}
	if len(l.Refused) == 0 && len(out.Events) == 0 {
		return false, nil
	}
	var refused []rugwatch.Event
	evaluateRefused(Input{Listing: l}, func(e rugwatch.Event) {
		e.Server, e.OccurredAt = server, now
		refused = append(refused, e)
	})
	for _, e := range refused {
		if err := r.emit(tx, out, e); err != nil {
			return false, err
		}
	}
	return false, r.queueAlerts(tx, out, false, now)
}

// gather completes in with what the store says of the server: its last
// record, the verified current approvals (withdrawing those that are
// replays, which returns their approval.invalid events), the approvals
// drift withdrew from drifted tools, and the index of every server's
// tool names when findings will need it.
func (r *Recorder) gather(tx *store.Tx, in Input, prev store.ServerRecord, found bool) (Input, []rugwatch.Event, error) {
	server, l := in.Server, in.Listing
	in.Approvals, in.Revoked = map[string]Approved{}, map[string]Approved{}
	if r.ConfigFindings != nil {
		in.ConfigFindings = r.ConfigFindings(server)
	}
	if found {
		in.Prev = &prev
	}
	if r.index == nil && (needsFindings(prev, l, in.Findings) || lostTools(prev, l)) {
		// Loaded once, and only when a definition is new or changed
		// (findings are computed only then); kept current by persist.
		// Reading every server's record on every poll would make a
		// fleet's cycle quadratic; a steady cycle never loads it.
		idx := detect.NewToolIndex(nil)
		if err := tx.ServerTools(func(name string, tools map[string]rugwatch.State) error {
			idx.SetServer(name, liveTools(tools))
			return nil
		}); err != nil {
			return in, nil, err
		}
		r.idxMu.Lock()
		r.index = idx
		r.idxMu.Unlock()
	}
	in.Index = r.index
	current, err := tx.Approvals(server)
	if err != nil {
		return in, nil, err
	}
	if err := r.refreshWithdrawn(tx); err != nil {
		return in, nil, err
	}
	if in.Egress, err = r.gatherEgress(tx, server); err != nil {
		return in, nil, err
	}
	var replays []rugwatch.Event
	observed := observedDigests(l)
	for _, a := range current {
		if a.Kind == store.KindEgress || a.Kind == store.KindLaunch {
			continue // gatherEgress's; a launch approval is the Ledger's alone (approveLaunch)
		}
		ap := r.check(a)
		subject := a.Tool
		if a.Kind == store.KindInstructions {
			subject = ""
		}
		if ap.Valid && observed != nil && observed[subject] != a.Digest {
			ap = r.withDefinition(a) // diffed against by Evaluate
		}
		if ap.Valid {
			problem, err := r.replayed(tx, a, ap, prev)
			if err != nil {
				return in, nil, err
			}
			if problem != "" {
				// Out of the current approvals, so it is reported once,
				// and no reader of approvals believes it.
				if _, _, err := tx.RevokeApproval(server, a.Kind, a.Tool, problem, in.Now); err != nil {
					return in, nil, fmt.Errorf("withdrawing replayed approval of %s/%s: %w", server, a.Tool, err)
				}
				replays = append(replays, rugwatch.Event{Type: rugwatch.EventApprovalInvalid, Severity: rugwatch.SeverityCritical,
					Server: server, Tool: a.Tool, ApprovedDigest: a.Digest, KeyID: ap.KeyID, OccurredAt: in.Now, Message: problem})
				continue
			}
		}
		approvedNow := prev.Tools[a.Tool].State == rugwatch.StateApproved
		if a.Kind == store.KindInstructions {
			approvedNow = prev.InstructionsState == rugwatch.StateApproved
		}
		if ap.Valid && !approvedNow && !meets(r.Policy, server, ap.Signers) {
			// Signatures towards a quorum not yet met approve nothing;
			// a drift withdraws them all.
			if obs, listed := observed[subject]; observed != nil && (!listed || obs != a.Digest) {
				if _, _, err := tx.RevokeApproval(server, a.Kind, a.Tool, "drift: observed "+string(obs), in.Now); err != nil {
					return in, nil, fmt.Errorf("withdrawing signatures of %s/%s: %w", server, a.Tool, err)
				}
			}
			continue
		}
		switch a.Kind {
		case store.KindTool:
			in.Approvals[a.Tool] = ap
		case store.KindInstructions:
			in.Instructions = &ap
		}
	}
	// Drifted tools (also those removed while drifted) are diffed against
	// the approval drift withdrew.
	for name, t := range prev.Tools {
		drifted := t.State == rugwatch.StateDrifted || (t.State == rugwatch.StateRemoved && t.PrevState == rugwatch.StateDrifted)
		if !drifted || t.ApprovedDigest == "" {
			continue
		}
		a, ok, err := FindApproval(tx, r.withDefinition, server, name, t.ApprovedDigest)
		if err != nil {
			return in, nil, err
		}
		if ok {
			in.Revoked[name] = a
		}
	}
	adoptLaunchRevision(in.Prev, l)
	return in, replays, nil
}

// decide is Evaluate and the pins it does not own (revision, remote
// identity, sandbox), with the replays gather found first.
func (r *Recorder) decide(in Input, replays []rugwatch.Event, prev store.ServerRecord) Outcome {
	l := in.Listing
	out := Evaluate(in)
	out.Events = append(replays, out.Events...)
	cloaked := r.noteRevision(prev, l, &out.Server)
	if out.Summarised {
		cloaked = dropUnrecorded(cloaked, &out.Server)
	}
	out.Events = append(out.Events, cloaked...)
	out.Events = append(out.Events, noteIdentity(l, &out.Server, in.Now)...)
	egress, approve := decideEgress(in, &out.Server)
	out.Events, out.ApproveEgress = append(out.Events, egress...), approve
	if l != nil {
		out.Server.Sandboxed, out.Server.SandboxNote = l.Sandboxed, l.SandboxNote
	}
	return out
}

// apply carries out what decide decided: approvals drift withdrew are
// revoked, the events appended (each with its seq), and what
// approve_first_seen approves is signed and stored.
func (r *Recorder) apply(tx *store.Tx, in Input, out *Outcome) error {
	server, l, now := in.Server, in.Listing, in.Now
	for _, name := range out.Revoke {
		obs := out.Server.Tools[name].ObservedDigest
		if _, _, err := tx.RevokeApproval(server, store.KindTool, name, "drift: observed "+string(obs), now); err != nil {
			return fmt.Errorf("revoking approval of %s/%s: %w", server, name, err)
		}
	}
	if out.RevokeInstructions {
		if _, _, err := tx.RevokeApproval(server, store.KindInstructions, "", "drift: observed "+string(out.Server.InstructionsDigest), now); err != nil {
			return fmt.Errorf("revoking approval of %s instructions: %w", server, err)
		}
	}
	// Events first, so each tool's record knows the seq of its newest
	// transition before a first-sight approval is bound to it.
	events := out.Events
	out.Events = nil
	for _, e := range events {
		if err := r.emit(tx, out, e); err != nil {
			return err
		}
	}
	if out.ApproveInstructions && l != nil && l.Instructions != nil {
		st, err := signatures.InstructionsStatement(server, *l.Instructions, l.InstructionsDigest, signatures.Review{
			Seq: out.Server.InstructionsTransitionSeq, ApprovedAt: now, Note: firstSightNote})
		if err != nil {
			return err
		}
		if err := r.approveFirstSight(tx, out, st, "server instructions "+firstSightNote); err != nil {
			return err
		}
	}
	for _, t := range out.Approve {
		// First sight means first: a tool with any approval history
		// (approved, drifted, revoked before) is never approved without a
		// human, whatever the record says now.
		hist, err := tx.ApprovalHistory(server, t.Name)
		if err != nil {
			return err
		}
		if len(hist) > 0 {
			continue
		}
		st := signatures.ToolStatement(server, t.Name, t.Digest, t.Canonical, signatures.Review{
			Seq: out.Server.Tools[t.Name].LastTransitionSeq, ApprovedAt: now, Note: firstSightNote})
		if err := r.approveFirstSight(tx, out, st, firstSightNote); err != nil {
			return err
		}
	}
	return r.applyEgress(tx, server, now, out)
}

// firstSightNote is what an approve_first_seen approval says of itself.
const firstSightNote = "approved on first sight (approve_first_seen)"

// approveFirstSight signs st with the daemon's key, stores it as the
// current approval of its subject (a tool, or the instructions), marks the
// subject approved in out, and emits tool.approved saying message.
func (r *Recorder) approveFirstSight(tx *store.Tx, out *Outcome, st signatures.Statement, message string) error {
	what := st.Server + " instructions"
	if st.Kind == store.KindTool {
		what = st.Server + "/" + st.Tool
	}
	env, err := r.Signer.SignApproval(st)
	if err != nil {
		return fmt.Errorf("signing first-sight approval of %s: %w", what, err)
	}
	now := st.ApprovedAt
	if err := tx.PutApproval(store.ApprovalRecord{Kind: st.Kind, Server: st.Server, Tool: st.Tool, Digest: st.Digest,
		KeyID: r.Signer.KeyID(), ApprovedAt: now, Envelope: env, Note: "approved on first sight"}); err != nil {
		return err
	}
	if st.Kind == store.KindTool {
		rec := out.Server.Tools[st.Tool]
		rec.State, rec.ApprovedDigest = rugwatch.StateApproved, st.Digest
		out.Server.Tools[st.Tool] = rec
	} else {
		out.Server.InstructionsState, out.Server.InstructionsApproved = rugwatch.StateApproved, st.Digest
	}
	return r.emit(tx, out, rugwatch.Event{
		Type: rugwatch.EventToolApproved, Severity: rugwatch.SeverityInfo, Server: st.Server, Tool: st.Tool,
		ApprovedDigest: st.Digest, ObservedDigest: st.Digest, KeyID: r.Signer.KeyID(), OccurredAt: now, Message: message,
	})
}

// persist writes the server's record: only the poll's time when nothing
// moved, else the whole record, keeping the index of tool names and the
// other servers' shadowing findings current.
func (r *Recorder) persist(tx *store.Tx, in Input, prev store.ServerRecord, found bool, out *Outcome) error {
	server, l := in.Server, in.Listing
	if found && len(out.Events) == 0 && len(out.Revoke) == 0 && !out.RevokeInstructions {
		// Nothing moved: the poll leaves only its time, never the record
		// with its tools inline, so a steady fleet writes a few bytes per
		// server per cycle and the file does not grow.
		same, err := tx.SameServer(out.Server)
		if err != nil {
			return err
		}
		if same {
			if err := tx.MarkPolled(server, in.Now); err != nil {
				return err
			}
			return r.noteListing(tx, server, l)
		}
	}
	if err := tx.PutServer(out.Server); err != nil {
		return err
	}
	if r.index != nil {
		r.idxMu.Lock()
		r.index.SetServer(server, toolNames(out.Server))
		r.idxMu.Unlock()
		// The other servers' twins of a name gained or lost.
		if err := refreshShadowing(tx, server, toolNames(prev), toolNames(out.Server), r.index); err != nil {
			return err
		}
	}
	return r.noteListing(tx, server, l)
}

// emit appends e, moves the transition seqs of the tool it is about and
// adds it to out.Events; queueAlerts hands the poll's events to InTx.
func (r *Recorder) emit(tx *store.Tx, out *Outcome, e rugwatch.Event) error {
	if err := tx.AppendEvent(&e); err != nil {
		return err
	}
	out.Server.NoteEvent(e)
	noteEgressEvent(&out.Server, e)
	out.Events = append(out.Events, e)
	return nil
}

// warnUnsandboxed logs a stdio server's sandbox note once, not on every
// poll: the reason (a kernel without user namespaces) rarely changes.
func (r *Recorder) warnUnsandboxed(server, note string) {
	if r.Log == nil {
		return
	}
	r.sandboxMu.Lock()
	defer r.sandboxMu.Unlock()
	if r.sandboxWarned[server] == note {
		return
	}
	if r.sandboxWarned == nil {
		r.sandboxWarned = map[string]string{}
	}
	r.sandboxWarned[server] = note
	if note != "" {
		r.Log.Warn("stdio server not sandboxed", "server", server, "reason", note)
	}
}

// CheckApproval verifies an approval record: the envelope must verify with
// a trusted key and its statement must name exactly this record's server,
// tool and digest, so an envelope copied onto another tool counts as none.
func CheckApproval(v Verifier, a store.ApprovalRecord) Approved {
	out := Approved{Digest: a.Digest}
	if v == nil {
		out.Problem = "no trusted keys configured"
		return out
	}
	st, err := v.Verify(a.Envelope)
	if err != nil {
		out.Problem = err.Error()
		return out
	}
	if !st.Names(a.Kind, a.Server, a.Tool, a.Digest) {
		out.Problem = fmt.Sprintf("signed statement names %s, record says %s %s/%s %s",
			st.Subject(), a.Kind, a.Server, a.Tool, a.Digest)
		return out
	}
	out.Definition = st.Definition
	out.KeyID = st.KeyID
	out.Resolves = st.Resolves
	counted := append([]signatures.Statement{st}, cosigners(v, a, st)...)
	for _, c := range counted {
		out.Signers = append(out.Signers, c.KeyID)
	}
	out.Grants = signatures.GrantsOf(counted)
	out.Valid = true
	return out
}

// cosigners returns the statements of a's further signatures that count:
// each verifies with a trusted key, names exactly what the first does,
// and was bound no earlier than the first (one of an older state pasted
// in counts none). One that does not is left out, never fails the record:
// the first signature alone still stands for what it is.
func cosigners(v Verifier, a store.ApprovalRecord, first signatures.Statement) []signatures.Statement {
	var out []signatures.Statement
	for _, c := range a.Cosignatures {
		st, err := v.Verify(c.Envelope)
		if err != nil || !st.Names(a.Kind, a.Server, a.Tool, a.Digest) {
			continue
		}
		seq, ok := st.Bound()
		if firstSeq, firstOK := first.Bound(); !ok || (firstOK && seq < firstSeq) {
			continue
		}
		out = append(out, st)
	}
	return out
}

// FindApproval finds the verified approval of a tool under digest: the
// current one, else the newest in history (a drifted or revoked tool's
// approval lives there). check verifies a record. What it finds shows
// what was approved (diffs of a drifted tool); it never approves: only
// the Recorder's current approvals, past its replay check, do.
func FindApproval(tx *store.Tx, check func(store.ApprovalRecord) Approved, server, tool string, digest rugwatch.Digest) (Approved, bool, error) {
	cur, ok, err := tx.Approval(server, store.KindTool, tool)
	if err != nil {
		return Approved{}, false, err
	}
	if ok && cur.Digest == digest {
		if a := check(cur); a.Valid {
			return a, true, nil
		}
	}
	hist, err := tx.ApprovalHistory(server, tool)
	if err != nil {
		return Approved{}, false, err
	}
	for i := len(hist) - 1; i >= 0; i-- {
		if hist[i].Kind == store.KindTool && hist[i].Digest == digest {
			if a := check(hist[i]); a.Valid {
				return a, true, nil
			}
		}
	}
	return Approved{}, false, nil
}
