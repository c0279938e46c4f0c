package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/control"
	"github.com/rugwatch/rugwatch/monitor"
	"github.com/rugwatch/rugwatch/signatures"
	"github.com/rugwatch/rugwatch/store"
	"github.com/rugwatch/rugwatch/visible"
)

// runApprove shows tools exactly as last observed, asks, signs and stores
// their approvals.
func (a *App) runApprove(ctx context.Context, args []string) error {
	fs := a.newFlags("approve")
	all := fs.Bool("all", false, "approve every tool that is not approved")
	digest := fs.String("digest", "", "approve only if the observed digest is still this")
	yes := fs.Bool("yes", false, "do not ask")
	key := fs.String("key", "", "approver private key")
	note := fs.String("note", "", "note stored with the approval")
	acceptFindings := fs.Bool("accept-findings", false, "approve even definitions with critical poisoning findings (recorded in the approval)")
	withInstructions := fs.Bool("instructions", false, "approve the server's instructions")
	returnsSecrets := fs.Bool("returns-secrets", false, "the named tools return secrets by design (a vault): their results raise no secret-in-result, and what they return is still kept from open-world tools (signed in the approval)")
	withLaunch := fs.Bool("launch", false, "pin what now runs for a stdio server (after launch.drifted) and the egress destinations it uses")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usagef("name a server: rugwatch approve SERVER [TOOL…] [--all]")
	}
	server, tools := pos[0], pos[1:]
	if len(tools) == 0 && !*all && !*withInstructions && !*withLaunch {
		return usagef("name the tools to approve, or pass --all, --instructions or --launch: rugwatch approve %s TOOL… | --all", server)
	}
	if *returnsSecrets && len(tools) == 0 {
		return usagef("--returns-secrets is given per tool: rugwatch approve %s TOOL… --returns-secrets", server)
	}
	if *digest != "" && len(tools) != 1 {
		return usagef("--digest checks one tool: rugwatch approve %s TOOL --digest sha256:…", server)
	}
	cfg, err := a.config()
	if err != nil {
		return err
	}
	signer, err := a.loadApprover(cfg, *key)
	if err != nil {
		return err
	}
	b, err := a.backend(ctx, false)
	if err != nil {
		return err
	}
	defer b.Close()
	rec, err := b.Server(ctx, server)
	if err != nil {
		return err
	}
	picked, err := pickTools(rec, tools, *all)
	if err != nil {
		return err
	}
	// --instructions signs them whenever the server sends some: approved
	// ones too, a cosignature a raised quorum may be waiting for (as a
	// named tool is signed whatever its state).
	instr := rec.InstructionsDigest != "" && (*withInstructions || *all && rec.InstructionsState != rugwatch.StateApproved)
	launch := (*all || *withLaunch) && (rec.LaunchDrifted || rec.IdentityDrifted)
	var egress []string // nil: no egress to approve
	if *all || *withLaunch {
		egress = monitor.EgressToApprove(rec)
	}
	if *withInstructions && rec.InstructionsDigest == "" {
		return fmt.Errorf("server %s sends no instructions", server)
	}
	if len(picked) == 0 && !instr && !launch && egress == nil {
		fmt.Fprintf(a.Stdout, "nothing to approve on %s: every observed tool is approved\n", server)
		return nil
	}
	if *digest != "" && picked[0].ObservedDigest != rugwatch.Digest(*digest) {
		fmt.Fprintf(a.Stderr, "rugwatch approve: %s/%s is now %s, not %s; review it again\n",
			server, visible.Line(picked[0].Name), picked[0].ObservedDigest, *digest)
		return errFindings
	}
	for _, t := range picked {
		fmt.Fprintf(a.Stdout, "── %s/%s  %s  %s\n", server, visible.Line(t.Name), strings.ToUpper(string(t.State)), t.ObservedDigest)
		if len(t.Changes) > 0 {
			fmt.Fprintf(a.Stdout, "  changed since the approval of %s:\n", t.ApprovedDigest.Short())
			printChanges(a.Stdout, t.Changes, "    ")
		}
		printDefinition(a.Stdout, t.Definition, "  ")
		printFindings(a.Stdout, "  ", t.Findings)
		if *returnsSecrets {
			fmt.Fprintln(a.Stdout, "  returns secrets by design: its results raise no secret-in-result; what they carry may still not reach an open-world tool")
		}
		fmt.Fprintln(a.Stdout)
	}
	if instr {
		fmt.Fprintf(a.Stdout, "── %s instructions  %s  %s\n", server, strings.ToUpper(string(rec.InstructionsState)), rec.InstructionsDigest)
		for _, line := range strings.Split(visible.Text(rec.Instructions), "\n") {
			fmt.Fprintf(a.Stdout, "  │ %s\n", line)
		}
		printFindings(a.Stdout, "  ", rec.InstructionsFindings)
		fmt.Fprintln(a.Stdout)
	}
	if launch {
		fmt.Fprintf(a.Stdout, "── %s launch identity changed\n  pinned: %s\n  now:    %s\n\n", server, visible.Line(string(rec.LaunchPinned)), visible.Line(string(rec.Launch)))
	}
	if egress != nil {
		printEgress(a.Stdout, server, rec, egress)
	}
	// The Ledger refuses a signature that does not accept every critical
	// finding (monitor.Unaccepted); --accept-findings signs them all, so
	// without it any critical finding stops the approval here, before
	// anything is signed.
	var blocked []string
	if instr && len(monitor.Unaccepted(rec.InstructionsFindings, nil)) > 0 {
		blocked = append(blocked, "the instructions")
	}
	for _, t := range picked {
		if len(monitor.Unaccepted(t.Findings, nil)) > 0 {
			blocked = append(blocked, visible.Line(t.Name))
		}
	}
	if len(blocked) > 0 && !*acceptFindings {
		fmt.Fprintf(a.Stderr, "rugwatch approve: %s of %s carry critical poisoning findings (shown above); not approved. "+
			"If you have read them and still trust the definitions, run again with --accept-findings; that is recorded in the signed approval.\n",
			strings.Join(blocked, ", "), server)
		return errFindings
	}
	if !*yes {
		fmt.Fprintf(a.Stdout, "Approve %s of %s exactly as shown, signed by %s? [y/N] ", approvalSubject(len(picked), instr, launch, egress != nil), server, signer.KeyID())
		line, _ := bufio.NewReader(a.Stdin).ReadString('\n')
		if ans := strings.ToLower(strings.TrimSpace(line)); ans != "y" && ans != "yes" {
			fmt.Fprintln(a.Stdout, "not approved")
			return errFindings
		}
	}
	now := time.Now().UTC()
	signed := make([]monitor.SignedApproval, 0, len(picked))
	for _, t := range picked {
		// Bound to the state just shown (Seq): the daemon takes it only
		// while this is still the tool's newest transition.
		env, err := signer.SignApproval(signatures.ToolStatement(server, t.Name, t.ObservedDigest, t.Definition, signatures.Review{
			Seq: t.LastTransitionSeq, ApprovedAt: now, Note: *note, Accepted: signatures.AcceptedFindings(t.Findings), ReturnsSecrets: *returnsSecrets}))
		if err != nil {
			return fmt.Errorf("signing %s/%s: %w", server, t.Name, err)
		}
		signed = append(signed, monitor.SignedApproval{Tool: t.Name, Digest: t.ObservedDigest, Envelope: env, Note: *note})
	}
	if instr {
		st, err := signatures.InstructionsStatement(server, rec.Instructions, rec.InstructionsDigest, signatures.Review{
			Seq: rec.InstructionsTransitionSeq, ApprovedAt: now, Note: *note, Accepted: signatures.AcceptedFindings(rec.InstructionsFindings)})
		if err != nil {
			return err
		}
		env, err := signer.SignApproval(st)
		if err != nil {
			return fmt.Errorf("signing %s instructions: %w", server, err)
		}
		signed = append(signed, monitor.SignedApproval{Kind: store.KindInstructions, Digest: rec.InstructionsDigest, Envelope: env, Note: *note})
	}
	if launch {
		// Bound to the launch state just shown: under a quorum each
		// approver's signature counts towards pinning it again.
		st, err := signatures.LaunchStatement(server, rec.Launch, rec.Identity, signatures.Review{Seq: rec.LaunchTransitionSeq, ApprovedAt: now, Note: *note})
		if err != nil {
			return err
		}
		env, err := signer.SignApproval(st)
		if err != nil {
			return fmt.Errorf("signing %s launch identity: %w", server, err)
		}
		signed = append(signed, monitor.SignedApproval{Kind: store.KindLaunch, Digest: st.Digest, Envelope: env, Note: *note})
	}
	var egressDigest rugwatch.Digest
	if egress != nil {
		// Bound to the egress state just shown, like a tool's approval.
		st, err := signatures.EgressStatement(server, egress, signatures.Review{Seq: rec.Egress.TransitionSeq, ApprovedAt: now, Note: *note})
		if err != nil {
			return err
		}
		env, err := signer.SignApproval(st)
		if err != nil {
			return fmt.Errorf("signing %s egress: %w", server, err)
		}
		signed = append(signed, monitor.SignedApproval{Kind: store.KindEgress, Digest: st.Digest, Envelope: env, Note: *note})
		egressDigest = st.Digest
	}
	before, err := newestSeq(ctx, b, server)
	if err != nil {
		return err
	}
	if _, err := b.Approve(ctx, server, signed, launch); err != nil {
		return err
	}
	waiting, err := a.printSignatures(ctx, b, server, picked, instr, launch, egressDigest)
	if err != nil {
		return err
	}
	if err := a.printNotGranted(ctx, b, server, picked, signer.KeyID(), before); err != nil {
		return err
	}
	verb := "approved"
	if waiting {
		verb = "signed"
	}
	fmt.Fprintf(a.Stdout, "%s %s of %s with key %s\n", verb, approvalSubject(len(picked), instr, launch, egress != nil), server, signer.KeyID())
	return nil
}

// printSignatures says, for each tool, the instructions (instr), the
// launch identity (launch) and the egress set (egress, "" for none) just
// signed whose server needs more
// than one signature, how far its approval is: "signatures: 1 of 2
// (needs role security)". It reports whether any is still waiting.
func (a *App) printSignatures(ctx context.Context, b control.Backend, server string, picked []store.ToolRecord, instr, launch bool, egress rugwatch.Digest) (bool, error) {
	rep, err := b.Status(ctx, []string{server})
	if err != nil || len(rep.Servers) == 0 {
		return false, err
	}
	waiting := false
	s := rep.Servers[0]
	if instr && s.InstructionsSignatures != "" {
		note := ""
		if s.InstructionsState != rugwatch.StateApproved {
			waiting = true
			note = "; stay " + string(s.InstructionsState) + " (the proxy withholds them) until the quorum is met"
		}
		fmt.Fprintf(a.Stdout, "%s instructions  %s  signatures: %s%s\n", server, strings.ToUpper(string(s.InstructionsState)), s.InstructionsSignatures, note)
	}
	if launch && s.LaunchSignatures != "" {
		state, note := "APPROVED", ""
		if s.LaunchDrifted || s.IdentityDrifted {
			waiting = true
			state, note = "DRIFTED", "; stays drifted (the proxy serves the server nothing) until the quorum is met"
		}
		fmt.Fprintf(a.Stdout, "%s launch identity  %s  signatures: %s%s\n", server, state, s.LaunchSignatures, note)
	}
	if egress != "" && s.Egress != nil && s.Egress.Signatures != "" {
		state, note := "APPROVED", ""
		if s.Egress.ApprovedDigest != egress {
			waiting = true
			state, note = "PENDING", "; the destinations stay unapproved until the quorum is met"
		}
		fmt.Fprintf(a.Stdout, "%s egress destinations  %s  signatures: %s%s\n", server, state, s.Egress.Signatures, note)
	}
	for _, t := range s.Tools {
		if t.Signatures == "" || !slices.ContainsFunc(picked, func(p store.ToolRecord) bool { return p.Name == t.Name }) {
			continue
		}
		note := ""
		if t.State != rugwatch.StateApproved {
			waiting = true
			note = "; stays " + string(t.State) + " (the proxy withholds it) until the quorum is met"
		}
		fmt.Fprintf(a.Stdout, "%s/%s  %s  signatures: %s%s\n", server, visible.Line(t.Name), strings.ToUpper(string(t.State)), t.Signatures, note)
	}
	return waiting, nil
}

// newestSeq is the seq of server's newest event, 0 for none.
func newestSeq(ctx context.Context, b control.Backend, server string) (uint64, error) {
	ev, err := b.History(ctx, server, 1)
	if err != nil || len(ev) == 0 {
		return 0, err
	}
	return ev[0].Seq, nil
}

// printNotGranted says, for each tool in picked whose signature by keyID
// (an event after seq since) left an allowance ungranted because not
// every signature of its approval carries it, which: "demo/add:
// returns_secrets not granted: not every signature carries it".
func (a *App) printNotGranted(ctx context.Context, b control.Backend, server string, picked []store.ToolRecord, keyID string, since uint64) error {
	if len(picked) == 0 {
		return nil
	}
	events, err := b.History(ctx, server, 4*len(picked)+16)
	if err != nil {
		return err
	}
	said := map[string]bool{}
	for _, e := range events { // newest first
		if e.Seq <= since || e.KeyID != keyID || said[e.Tool] || !strings.HasSuffix(e.Message, monitor.NotGranted) ||
			!slices.ContainsFunc(picked, func(t store.ToolRecord) bool { return t.Name == e.Tool }) {
			continue
		}
		said[e.Tool] = true
		clause := e.Message
		if i := strings.LastIndex(clause, "; "); i >= 0 {
			clause = clause[i+len("; "):]
		}
		fmt.Fprintf(a.Stdout, "%s/%s: %s\n", server, visible.Line(e.Tool), visible.Line(clause))
	}
	return nil
}

// approvalSubject says what an approval covers: "3 tool(s)", "the
// instructions", "the launch identity", "the egress destinations", joined.
func approvalSubject(tools int, instr, launch, egress bool) string {
	var parts []string
	if tools > 0 {
		parts = append(parts, fmt.Sprintf("%d tool(s)", tools))
	}
	if instr {
		parts = append(parts, "the instructions")
	}
	if launch {
		parts = append(parts, "the launch identity")
	}
	if egress {
		parts = append(parts, "the egress destinations")
	}
	return strings.Join(parts, " and ")
}

// pickTools chooses the tools to approve from the last observation.
func pickTools(rec store.ServerRecord, names []string, all bool) ([]store.ToolRecord, error) {
	var out []store.ToolRecord
	if all {
		for _, t := range rec.Tools {
			if t.State != rugwatch.StateApproved && t.State != rugwatch.StateRemoved {
				out = append(out, t)
			}
		}
	}
	for _, n := range names {
		t, ok := rec.Tools[n]
		if !ok {
			return nil, usagef("server %s has no tool %q in its last listing", rec.Name, n)
		}
		if t.State == rugwatch.StateRemoved {
			return nil, fmt.Errorf("%s/%s is no longer listed by the server; nothing to approve", rec.Name, n)
		}
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// printEgress shows the egress destinations about to be approved: the set
// signed, and which of them are new since the last approval.
func printEgress(w io.Writer, server string, rec store.ServerRecord, set []string) {
	eg := rec.Egress
	state := "PENDING"
	switch {
	case eg.PinMissing:
		state = "INVALID"
	case len(eg.Drifted) > 0:
		state = "DRIFTED"
	}
	fmt.Fprintf(w, "── %s egress destinations  %s\n", server, state)
	if len(set) == 0 {
		fmt.Fprintln(w, "  none: the server used no destination; approving pins that it reaches none")
	}
	for _, d := range set {
		mark := ""
		switch {
		case slices.Contains(eg.Refused, d):
			mark = "  NEW (refused until approved)"
		case eg.PinnedDigest != "" && !slices.Contains(eg.Pinned, d):
			mark = "  NEW"
		}
		fmt.Fprintf(w, "  %s%s\n", visible.Line(d), mark)
	}
	if eg.Dropped > 0 {
		fmt.Fprintf(w, "  (%d more destinations past the bound were counted, not recorded; they stay unapproved)\n", eg.Dropped)
	}
	fmt.Fprintln(w)
}
