package monitor

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/mcpclient"
	"github.com/rugwatch/rugwatch/signatures"
	"github.com/rugwatch/rugwatch/store"
)

// Behaviour pinning (issue 20 item 7). A launch identity pins what runs
// and the tool digests pin what the model reads; neither sees a server
// whose code changed to send data somewhere new while its definitions
// stay byte-identical. So the destinations a sandboxed server reaches
// through its egress path are recorded per server (store.EgressRecord)
// and approved with a signed statement of kind egress, shown and signed
// by `rugwatch approve SERVER --launch` (or --all). Once a set is
// approved, a destination outside it is egress.drifted (critical), and
// with `egress_mode: pinned` the sandbox refuses it until approved.
//
// The allow-list still bounds what may be reached at all; the pin is the
// subset a human approved, learnt from what the server used. Approving
// signs everything seen so far, so a pin only grows: an older statement
// put back approves a subset of the current one, and no replay check is
// needed beyond the statement naming this server. A pin deleted from the
// store or no longer verifying is caught through the event log's
// egress.approved: nothing then counts as approved (fail closed).

// maxEgressNamed bounds how many destinations one event names (its
// message and its changes); the rest are counted.
const maxEgressNamed = 16

// EgressPin is a server's egress approval as the Recorder verified it.
type EgressPin struct {
	// Approved: a current approval of kind egress verifies and names this
	// server; Dests are its destinations, Digest and KeyID its own.
	Approved bool
	Dests    []string
	Digest   rugwatch.Digest
	KeyID    string
	// Missing: the event log says the server's egress was approved, but
	// no current approval verifies (deleted, edited, swapped for another
	// server's). Nothing counts as approved; Problem says why.
	Missing bool
	Problem string
}

// applies says whether a pin stands: an approved set, or the empty set
// of one gone missing.
func (p EgressPin) applies() bool { return p.Approved || p.Missing }

// egressLog is what the Recorder folds in from the hash-chained event
// log (refreshWithdrawn), under r.mu: per server, the seq of its newest
// egress.approved. The log's word, not the record's, so an edited record
// cannot hide that a pin existed.
type egressLog struct {
	approved map[string]uint64
}

func (g *egressLog) note(tr store.Transition) {
	if tr.Type != rugwatch.EventEgressApproved {
		return
	}
	if g.approved == nil {
		g.approved = map[string]uint64{}
	}
	g.approved[tr.Server] = max(g.approved[tr.Server], tr.Seq)
}

func (g *egressLog) reset() { g.approved = nil }

// gatherEgress verifies server's current egress approval. Called with
// r.mu held, after refreshWithdrawn.
func (r *Recorder) gatherEgress(tx *store.Tx, server string) (EgressPin, error) {
	if r.egressPinOff {
		return EgressPin{}, nil
	}
	v, err := egressInForce(tx, server, r.withDefinition, r.Policy)
	if err != nil {
		return EgressPin{}, err
	}
	switch {
	case v.pin != nil:
		return EgressPin{Approved: true, Dests: v.dests, Digest: v.pin.Digest, KeyID: v.pin.KeyID}, nil
	case v.problem != "":
		return EgressPin{Missing: true, Digest: v.digest, Problem: v.problem}, nil
	}
	if seq := r.egressLog.approved[server]; seq > 0 {
		return EgressPin{Missing: true, Digest: v.digest, Problem: fmt.Sprintf("the egress approval recorded at seq %d is gone from the store "+
			"(or no longer meets the quorum); no destination counts as approved until `rugwatch approve %s --launch`", seq, server)}, nil
	}
	return EgressPin{}, nil
}

// egressVerdict is what a server's stored egress approvals say is in
// force.
type egressVerdict struct {
	// pin is the approval in force (it verifies, names a set the egress
	// path would, and meets the quorum), dests its destinations.
	pin   *Approved
	dests []string
	// problem: the current approval counts as none, and why; digest is
	// its digest.
	problem string
	digest  rugwatch.Digest
	// Neither pin nor problem: no approval is in force, either none was
	// ever stored or the current one still waits for signatures of a
	// quorum with none met before it. Whether one existed is then the
	// caller's to say (the event log, the record).
}

// egressInForce finds the egress approval in force for server, for the
// Recorder's polls and the proxy's sandbox alike. Under a quorum, the
// first signature of a new set is the current approval while the set
// waits for more; the pin in force meanwhile is the last one that met
// the quorum, superseded into the history by that signature. It is a
// subset of what is being signed (a pin only grows), so the signatures
// collected approve nothing before they are enough.
func egressInForce(tx *store.Tx, server string, check func(store.ApprovalRecord) Approved, p *signatures.Policy) (egressVerdict, error) {
	a, ok, err := tx.Approval(server, store.KindEgress, "")
	if err != nil || !ok {
		return egressVerdict{}, err
	}
	v, problem := egressApproval(a, check, p)
	switch {
	case problem == "":
		return v, nil
	case problem != errQuorumUnmet:
		return egressVerdict{problem: problem, digest: a.Digest}, nil
	}
	hist, err := tx.ApprovalHistory(server, "")
	if err != nil {
		return egressVerdict{}, err
	}
	for i := len(hist) - 1; i >= 0; i-- {
		h := hist[i]
		if h.Kind != store.KindEgress || !h.RevokedAt.IsZero() {
			continue
		}
		if v, problem := egressApproval(h, check, p); problem == "" {
			return v, nil
		}
	}
	return egressVerdict{digest: a.Digest}, nil
}

// errQuorumUnmet is egressApproval's problem for an approval that
// verifies but does not yet have the signatures its server needs.
const errQuorumUnmet = "its signatures do not meet the quorum"

// egressApproval checks one egress approval record: "" if it is a pin.
func egressApproval(a store.ApprovalRecord, check func(store.ApprovalRecord) Approved, p *signatures.Policy) (egressVerdict, string) {
	ap := check(a)
	if !ap.Valid {
		return egressVerdict{}, "the egress approval does not verify and counts as none: " + ap.Problem
	}
	dests, err := signatures.EgressDests(ap.Definition)
	if err != nil || slices.ContainsFunc(dests, func(d string) bool { return !mcpclient.ValidDest(d) }) {
		return egressVerdict{}, "the egress approval names a destination the egress path never would; it counts as none"
	}
	if !meets(p, a.Server, ap.Signers) {
		return egressVerdict{}, errQuorumUnmet
	}
	return egressVerdict{pin: &ap, dests: dests}, ""
}

// egressPinFor is the pin a poll's sandbox enforces for server: the
// verified approved set, an empty set when one is missing (fail closed,
// also when the store cannot say), nil while none was ever approved.
func (r *Recorder) egressPinFor(server string) *mcpclient.EgressPin {
	var pin EgressPin
	r.mu.Lock() // the caches gather reads, as inside the write transaction
	defer r.mu.Unlock()
	err := r.DB.View(func(tx *store.Tx) error {
		if err := r.refreshWithdrawn(tx); err != nil {
			return err
		}
		var err error
		pin, err = r.gatherEgress(tx, server)
		return err
	})
	switch {
	case err != nil:
		return &mcpclient.EgressPin{Dests: []string{}}
	case !pin.applies():
		return nil
	}
	return &mcpclient.EgressPin{Dests: append([]string{}, pin.Dests...)}
}

// decideEgress folds a poll's egress use into next.Egress and decides
// what it means: a pure function of the listing, the verified pin and
// the last record. It returns the events (egress.drifted once per new
// destination, approval.invalid once when a pin went missing) and
// whether approve_first_seen should sign what was seen.
func decideEgress(in Input, next *store.ServerRecord) ([]rugwatch.Event, bool) {
	l, pin := in.Listing, in.Egress
	if l == nil || (l.Egress == nil && next.Egress == nil && !pin.applies()) {
		return nil, false
	}
	var rec store.EgressRecord
	if next.Egress != nil {
		rec = *next.Egress
	}
	var events []rugwatch.Event
	ev := func(e rugwatch.Event) {
		e.Server, e.OccurredAt = in.Server, in.Now
		events = append(events, e)
	}
	if pin.Missing && !rec.PinMissing {
		ev(rugwatch.Event{Type: rugwatch.EventApprovalInvalid, Severity: rugwatch.SeverityCritical, ApprovedDigest: pin.Digest, Message: pin.Problem})
	}
	rec.PinMissing = pin.Missing
	rec.Pinned, rec.PinnedDigest = nil, ""
	if pin.Approved {
		rec.Pinned, rec.PinnedDigest = pin.Dests, pin.Digest
	}
	seen, dropped, droppedNames, refusedNow := foldEgress(rec.Seen, l.Egress, pin.Dests)
	rec.Seen = seen
	rec.Dropped += dropped
	if !pin.applies() {
		rec.Drifted, rec.Refused = nil, nil
		next.Egress = &rec
		return events, in.FirstSight && l.Egress != nil
	}
	var outside, newly, refused []string
	for _, d := range rec.Seen {
		if _, ok := slices.BinarySearch(pin.Dests, d); ok {
			continue
		}
		outside = append(outside, d)
		if !slices.Contains(rec.Drifted, d) {
			newly = append(newly, d)
		}
		if refusedNow[d] || slices.Contains(rec.Refused, d) {
			refused = append(refused, d)
		}
	}
	rec.Drifted, rec.Refused = outside, refused
	// What did not fit the record is not remembered, so a poll that
	// reached any unapproved destination past the bound raises the drift
	// again, naming what it can: a server that first fills the record
	// with made-up names must not then reach a new host unseen.
	if len(newly) > 0 || dropped > 0 {
		ev(egressDrifted(in.Server, len(pin.Dests), append(newly, droppedNames...), refusedNow, dropped))
	}
	next.Egress = &rec
	return events, false
}

// foldEgress adds a listing's destinations to seen (sorted, at most
// signatures.MaxEgressDests), counting what does not fit, or is not a
// destination the egress path would name, as dropped, and naming the
// first few that do not fit. A destination of the pin (sorted) that does
// not fit is approved, not dropped.
func foldEgress(seen []string, use *mcpclient.EgressUse, pinned []string) (out []string, dropped int, droppedNames []string, refused map[string]bool) {
	out = slices.Clone(seen)
	if use == nil {
		return out, 0, nil, nil
	}
	refused = map[string]bool{}
	dropped = use.Dropped
	for _, d := range use.Dests {
		if !mcpclient.ValidDest(d.Dest) {
			dropped++
			continue
		}
		if d.Refused {
			refused[d.Dest] = true
		}
		i, found := slices.BinarySearch(out, d.Dest)
		switch {
		case found:
		case len(out) >= signatures.MaxEgressDests:
			if _, ok := slices.BinarySearch(pinned, d.Dest); ok {
				continue
			}
			dropped++
			if len(droppedNames) < maxEgressNamed {
				droppedNames = append(droppedNames, d.Dest)
			}
		default:
			out = slices.Insert(out, i, d.Dest)
		}
	}
	return out, dropped, droppedNames, refused
}

// egressDrifted is the event for destinations newly outside the pin.
func egressDrifted(server string, pinned int, newly []string, refused map[string]bool, dropped int) rugwatch.Event {
	e := rugwatch.Event{Type: rugwatch.EventEgressDrifted, Severity: rugwatch.SeverityCritical}
	names := make([]string, 0, min(len(newly), maxEgressNamed))
	for i, d := range newly {
		if i == maxEgressNamed {
			names = append(names, fmt.Sprintf("and %d more", len(newly)-i))
			break
		}
		e.Changes = append(e.Changes, rugwatch.Change{Path: "/egress/" + d, Op: "add"})
		if refused[d] {
			d += " (refused: egress_mode pinned)"
		}
		names = append(names, d)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "the server used %d destination(s) outside the %d approved for it, whatever its tools say", len(newly), pinned)
	if len(names) > 0 {
		b.WriteString(": " + strings.Join(names, ", "))
	}
	if dropped > 0 {
		fmt.Fprintf(&b, "; %d more destination(s) past the bound of %d were only counted", dropped, signatures.MaxEgressDests)
	}
	fmt.Fprintf(&b, "; review with `rugwatch status %s`, then `rugwatch approve %s --launch`", server, server)
	e.Message = b.String()
	return e
}

// noteEgressEvent moves the egress transition seq of rec for an appended
// egress event: what the next egress approval is bound to.
func noteEgressEvent(rec *store.ServerRecord, e rugwatch.Event) {
	if rec.Egress == nil || e.Seq == 0 || e.Server != rec.Name {
		return
	}
	if e.Type == rugwatch.EventEgressDrifted || e.Type == rugwatch.EventEgressApproved {
		rec.Egress.TransitionSeq = e.Seq
	}
}

// applyEgress signs, with approve_first_seen's key, the destinations a
// server was first seen using, and stores the approval.
func (r *Recorder) applyEgress(tx *store.Tx, server string, now time.Time, out *Outcome) error {
	if !out.ApproveEgress || r.Signer == nil || out.Server.Egress == nil {
		return nil
	}
	eg := out.Server.Egress
	signers := []string{r.Signer.KeyID()}
	quorum := !meets(r.Policy, server, signers)
	if quorum {
		// Under a quorum the daemon signs a server's egress once, the
		// first time: then it waits for people, whatever it sees next.
		if _, signed, err := tx.Approval(server, store.KindEgress, ""); err != nil || signed {
			return err
		}
	}
	st, err := signatures.EgressStatement(server, eg.Seen, signatures.Review{Seq: eg.TransitionSeq, ApprovedAt: now, Note: firstSightNote})
	if err != nil {
		return err
	}
	env, err := r.Signer.SignApproval(st)
	if err != nil {
		return fmt.Errorf("signing first-sight egress approval of %s: %w", server, err)
	}
	if err := tx.PutApproval(store.ApprovalRecord{Kind: store.KindEgress, Server: server, Digest: st.Digest,
		KeyID: r.Signer.KeyID(), ApprovedAt: now, Envelope: env, Note: "approved on first sight"}); err != nil {
		return err
	}
	if quorum {
		// Under a quorum the daemon's signature is one of those the set
		// needs: nothing is pinned until people add theirs (approveEgress),
		// and no egress.approved says otherwise.
		e := egressApproved(server, eg.Seen, st.Digest, r.Signer.KeyID(), now, "egress destinations signed on first sight")
		e.Type, e.Signers = rugwatch.EventEgressCosigned, signers
		e.Message = "signatures: " + r.Policy.Tally(server, signers).String() + "; " + e.Message
		return r.emit(tx, out, e)
	}
	eg.Pinned, eg.PinnedDigest = slices.Clone(eg.Seen), st.Digest
	return r.emit(tx, out, egressApproved(server, eg.Pinned, st.Digest, r.Signer.KeyID(), now, "egress destinations "+firstSightNote))
}

// egressApproved is the event of an egress approval.
func egressApproved(server string, dests []string, digest rugwatch.Digest, keyID string, now time.Time, note string) rugwatch.Event {
	shown := dests
	more := ""
	if len(shown) > maxEgressNamed {
		shown, more = shown[:maxEgressNamed], fmt.Sprintf(" and %d more", len(dests)-maxEgressNamed)
	}
	list := "none"
	if len(shown) > 0 {
		list = strings.Join(shown, ", ") + more
	}
	return rugwatch.Event{Type: rugwatch.EventEgressApproved, Severity: rugwatch.SeverityInfo, Server: server,
		ApprovedDigest: digest, KeyID: keyID, OccurredAt: now, Message: note + ": " + list}
}

// recordUnchangedEgress is the unchanged-listing fast path's share of
// behaviour pinning: a listing identical to the last one may still come
// from a server that went somewhere new, so a destination the record has
// not seen is decided and applied as in a full poll. Called after the
// poll was marked polled.
func (r *Recorder) recordUnchangedEgress(tx *store.Tx, server string, l *mcpclient.Listing, now time.Time, out *Outcome) error {
	if l.Egress == nil {
		return nil
	}
	prev, found, err := tx.Server(server)
	if err != nil || !found {
		return err
	}
	if prev.Egress != nil && !egressNews(*prev.Egress, l.Egress) {
		return nil
	}
	if err := r.refreshWithdrawn(tx); err != nil {
		return err
	}
	pin, err := r.gatherEgress(tx, server)
	if err != nil {
		return err
	}
	out.Server = prev
	events, approve := decideEgress(Input{Server: server, Listing: l, Egress: pin, Now: now, FirstSight: r.Signer != nil}, &out.Server)
	out.ApproveEgress = approve
	for _, e := range events {
		if err := r.emit(tx, out, e); err != nil {
			return err
		}
	}
	if err := r.applyEgress(tx, server, now, out); err != nil {
		return err
	}
	if err := tx.PutServer(out.Server); err != nil {
		return err
	}
	// The record moved: the fast path's state digest follows it.
	return r.noteListing(tx, server, &mcpclient.Listing{Fingerprint: l.Fingerprint})
}

// egressNews says whether use holds anything rec has not recorded.
func egressNews(rec store.EgressRecord, use *mcpclient.EgressUse) bool {
	if use.Dropped > 0 {
		return true
	}
	for _, d := range use.Dests {
		if _, ok := slices.BinarySearch(rec.Seen, d.Dest); !ok {
			return true
		}
		if d.Refused && !slices.Contains(rec.Refused, d.Dest) && slices.Contains(rec.Drifted, d.Dest) {
			return true
		}
	}
	return false
}

// signedEgressSubject is the egress set of rec, which has egress
// recorded, that a signature of digest approves: any set the server's
// destinations may grow to, so the digest is the signature's own.
func signedEgressSubject(rec store.ServerRecord, digest rugwatch.Digest) subject {
	eg := rec.Egress
	return subject{kind: store.KindEgress, what: rec.Name + " egress", digest: digest, seq: eg.TransitionSeq,
		approved: eg.PinnedDigest == digest && !eg.PinMissing}
}

// approveEgress adds a signature, made by a human and bound to the
// egress state they reviewed, to the server's egress approval, and pins
// its destinations once the signatures meet the quorum.
func (l *Ledger) approveEgress(tx *store.Tx, rec *store.ServerRecord, sa SignedApproval, now time.Time) error {
	if rec.Egress == nil {
		return fmt.Errorf("server %s has no egress recorded: only a sandboxed stdio server with network: egress has one", rec.Name)
	}
	eg := rec.Egress
	s := signedEgressSubject(*rec, sa.Digest)
	st, err := l.verifySigned(tx, rec.Name, s, sa)
	if err != nil {
		return err
	}
	dests, err := signatures.EgressDests(st.Definition)
	if err != nil {
		return err
	}
	for _, d := range dests {
		if !mcpclient.ValidDest(d) {
			return fmt.Errorf("egress approval of %s names %q, which is not a host:port the egress path names", rec.Name, d)
		}
	}
	g, err := l.sign(tx, rec.Name, s, st, sa.Envelope)
	if err != nil || g.unchanged {
		return err
	}
	note := "egress destinations"
	if g.completes {
		note += " approved"
	}
	if st.Note != "" {
		note += " (" + st.Note + ")"
	}
	e := egressApproved(rec.Name, dests, sa.Digest, st.KeyID, now, note)
	l.signedEvent(&e, g, rugwatch.EventEgressCosigned)
	if g.completes {
		eg.Pinned, eg.PinnedDigest, eg.PinMissing = dests, sa.Digest, false
		var drifted, refused []string
		for _, d := range eg.Seen {
			if _, ok := slices.BinarySearch(dests, d); !ok {
				drifted = append(drifted, d)
				if slices.Contains(eg.Refused, d) {
					refused = append(refused, d)
				}
			}
		}
		eg.Drifted, eg.Refused = drifted, refused
	}
	if err := l.appendEvent(tx, &e); err != nil {
		return err
	}
	noteEgressEvent(rec, e)
	return nil
}

// EgressToApprove is what `rugwatch approve SERVER --launch` shows and
// signs for rec: every destination seen and every one approved, when
// that is not already the approved set (or none was approved, or the
// approval went missing); nil when there is nothing to approve.
func EgressToApprove(rec store.ServerRecord) []string {
	eg := rec.Egress
	if eg == nil {
		return nil
	}
	set := slices.Clone(eg.Seen)
	for _, d := range eg.Pinned {
		if _, ok := slices.BinarySearch(set, d); !ok {
			set = append(set, d)
		}
	}
	slices.Sort(set)
	if eg.PinnedDigest != "" && !eg.PinMissing && slices.Equal(set, eg.Pinned) {
		return nil
	}
	if set == nil {
		set = []string{}
	}
	return set
}

// resolve is s.Resolve with the egress pin the server's sandbox enforces
// (a stdio server's; a remote one has no egress path): every poll and
// every watch connection starts the server with the pin verified then.
func (p *Poller) resolve(s ServerSpec) func() (mcpclient.Target, error) {
	return func() (mcpclient.Target, error) {
		t, err := s.Resolve()
		if err != nil || p.Recorder == nil || p.Recorder.DB == nil || (t.Transport != "" && t.Transport != mcpclient.TransportStdio) {
			return t, err
		}
		t.Sandbox.EgressPin = p.Recorder.egressPinFor(s.Name)
		return t, nil
	}
}

// egressPin is the pin for the sandbox of a proxy's upstream: the egress
// approval in force if there is one, the empty set if the current one
// counts as none or the record says one went missing (the Recorder checks
// the event log at each poll), nil while none was ever approved.
func (l *Ledger) egressPin(tx *store.Tx, server string, rec store.ServerRecord) (*mcpclient.EgressPin, error) {
	check := func(a store.ApprovalRecord) Approved { return l.Verified.WithDefinition(l.Verifier, a) }
	v, err := egressInForce(tx, server, check, l.quorum())
	switch {
	case err != nil:
		return nil, err
	case v.pin != nil:
		return &mcpclient.EgressPin{Dests: v.dests}, nil
	case v.problem != "":
		return &mcpclient.EgressPin{Dests: []string{}}, nil
	case rec.Egress != nil && (rec.Egress.PinMissing || rec.Egress.PinnedDigest != ""):
		return &mcpclient.EgressPin{Dests: []string{}}, nil
	}
	return nil, nil
}
