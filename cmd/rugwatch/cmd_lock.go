package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/detect"
	"github.com/rugwatch/rugwatch/monitor"
	"github.com/rugwatch/rugwatch/report"
	"github.com/rugwatch/rugwatch/signatures"
	"github.com/rugwatch/rugwatch/visible"
)

// runLock is approvals as a file in git: export, verify, sign.
func (a *App) runLock(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usagef("rugwatch lock export [SERVER…] [--out FILE] | verify FILE [--live] | sign FILE [SERVER [TOOL…]]")
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "export":
		return a.runLockExport(ctx, args)
	case "verify":
		return a.runLockVerify(ctx, args)
	case "sign":
		return a.runLockSign(ctx, args)
	}
	return usagef("unknown lock subcommand %q; type one of: rugwatch lock export, rugwatch lock verify FILE, rugwatch lock sign FILE", sub)
}

// runLockExport writes the current approvals with every signature as a
// lock file.
func (a *App) runLockExport(ctx context.Context, args []string) error {
	fs := a.newFlags("lock export")
	out := fs.String("out", "", "write the lock file to `FILE` (default: standard output)")
	servers, err := parse(fs, args)
	if err != nil {
		return err
	}
	b, err := a.backend(ctx, false)
	if err != nil {
		return err
	}
	defer b.Close()
	lock, err := b.ExportLock(ctx, servers)
	if err != nil {
		return err
	}
	if *out == "" {
		_, err = a.Stdout.Write(lock)
		return err
	}
	return writeLockFile(*out, lock)
}

// writeLockFile replaces path with b whole: a reader (the daemon's
// approvals_from) never sees half a file.
func writeLockFile(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// readLock reads and parses a lock file, bounded before it is read. Its
// errors may quote the file (a member name JSON refused), so they are
// made visible here: they are printed as they are.
func readLock(path string) (signatures.Lock, error) {
	b, err := signatures.ReadLockFile(path)
	if err != nil {
		return signatures.Lock{}, errors.New(visible.Line(err.Error()))
	}
	l, err := signatures.ParseLock(b)
	if err != nil {
		return signatures.Lock{}, errors.New(visible.Line(path + ": " + err.Error()))
	}
	return l, nil
}

// runLockVerify checks a lock file against trusted_keys and the quorums
// and, with --live, against what the servers serve now. Exit 1 on any
// problem.
func (a *App) runLockVerify(ctx context.Context, args []string) error {
	fs := a.newFlags("lock verify")
	live := fs.Bool("live", false, "also poll the servers the file names and compare what they serve with it")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("name one lock file: rugwatch lock verify rugwatch.lock.json [--live]")
	}
	cfg, err := a.config()
	if err != nil {
		return err
	}
	ver, err := a.verifier(cfg)
	if err != nil {
		return err
	}
	rep := report.LockReport{SchemaVersion: 1, File: pos[0], Approvals: []report.LockApproval{}, Live: *live, Mismatches: []report.LockMismatch{}}
	b, err := signatures.ReadLockFile(pos[0])
	if err != nil {
		return errors.New(visible.Line(err.Error()))
	}
	lock, perr := signatures.ParseLock(b)
	switch {
	case perr != nil:
		rep.Approvals = append(rep.Approvals, report.LockApproval{Signers: []string{}, Problems: []string{"not a valid lock file: " + perr.Error()}})
	case len(lock.Signatures) == 0:
		// Nothing to verify is no verification: CI checking a file
		// emptied by mistake (or on purpose) must fail, not pass.
		rep.Approvals = append(rep.Approvals, report.LockApproval{Signers: []string{}, Problems: []string{
			"the file approves nothing (a header and no signature): export the approvals with `rugwatch lock export --out " + pos[0] + "`"}})
	}
	policy := a.approvalPolicy(cfg)
	var servers []string
	named := map[string]bool{}
	for _, ap := range signatures.CheckLock(lock, ver, policy) {
		r := report.LockApproval{Server: ap.Server, Kind: ap.Kind, Tool: ap.Tool, Digest: string(ap.Digest),
			Signers: []string{}, Signatures: ap.Tally.String(), Problems: append([]string{}, ap.Problems...)}
		for _, id := range ap.Signers {
			r.Signers = append(r.Signers, policy.Name(id))
		}
		slices.Sort(r.Signers)
		if _, ok := cfg.Server(ap.Server); !ok {
			r.Problems = append(r.Problems, fmt.Sprintf("no server %q in %s", ap.Server, cfg.Path))
		} else if !named[ap.Server] {
			named[ap.Server] = true
			servers = append(servers, ap.Server)
		}
		rep.Approvals = append(rep.Approvals, r)
	}
	if *live && len(servers) > 0 {
		be, err := a.backend(ctx, true)
		if err != nil {
			return err
		}
		defer be.Close()
		observed, err := be.Check(ctx, servers)
		if err != nil {
			return err
		}
		rep.Mismatches = monitor.CompareLive(lock, observed)
	}
	rep.OK = len(rep.Mismatches) == 0
	for _, ap := range rep.Approvals {
		rep.OK = rep.OK && len(ap.Problems) == 0
	}
	if *asJSON {
		if err := writeJSON(a.Stdout, rep); err != nil {
			return err
		}
	} else {
		printLockReport(a.Stdout, rep, len(lock.Signatures))
	}
	if !rep.OK {
		return errFindings
	}
	return nil
}

// printLockReport is lock verify's text: one line per approval, its
// problems under it, then what the servers serve that the file does not
// approve.
func printLockReport(w io.Writer, rep report.LockReport, sigs int) {
	approvals := 0 // a file that does not parse is one problem, no approval
	for _, ap := range rep.Approvals {
		if ap.Server != "" {
			approvals++
		}
	}
	fmt.Fprintf(w, "%s: %d approvals, %d signatures\n", visible.Line(rep.File), approvals, sigs)
	for _, ap := range rep.Approvals {
		mark := "ok  "
		if len(ap.Problems) > 0 {
			mark = "FAIL"
		}
		if ap.Server != "" {
			subject := signatures.LockSignature{Server: ap.Server, Kind: ap.Kind, Tool: ap.Tool}.Subject()
			fmt.Fprintf(w, "%s  %s  %s  signatures %s", mark, visible.Line(subject), visible.Line(ap.Digest), visible.Line(ap.Signatures))
			if len(ap.Signers) > 0 {
				fmt.Fprintf(w, " (%s)", visible.Line(strings.Join(ap.Signers, ", ")))
			}
			fmt.Fprintln(w)
		}
		for _, p := range ap.Problems {
			fmt.Fprintf(w, "      %s\n", visible.Line(p))
		}
	}
	if rep.Live {
		switch {
		case approvals == 0:
			fmt.Fprintln(w, "live: the file names no server to compare")
		case len(rep.Mismatches) == 0:
			fmt.Fprintln(w, "live: every server the file names serves what it approves")
		}
		for _, m := range rep.Mismatches {
			subject := signatures.LockSignature{Server: m.Server, Kind: m.Kind, Tool: m.Tool}.Subject()
			fmt.Fprintf(w, "LIVE  %s: %s", visible.Line(subject), visible.Line(m.Problem))
			if m.Locked != "" || m.Observed != "" {
				fmt.Fprintf(w, " (locked %s, observed %s)", visible.Line(orNone(m.Locked)), visible.Line(orNone(m.Observed)))
			}
			fmt.Fprintln(w)
		}
	}
	if rep.OK {
		fmt.Fprintln(w, "OK")
	} else {
		fmt.Fprintln(w, "FAILED")
	}
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// runLockSign adds the caller's signature to approvals of a lock file:
// the co-signature of a review in git. It signs the very statement the
// file's other signatures sign (definition, digest, the state it is bound
// to), after showing it, so the daemon counts both towards one quorum.
func (a *App) runLockSign(ctx context.Context, args []string) error {
	fs := a.newFlags("lock sign")
	key := fs.String("key", "", "approver private key (default $RUGWATCH_KEY, else the key init wrote)")
	yes := fs.Bool("yes", false, "do not ask")
	note := fs.String("note", "", "note signed with the approval")
	acceptFindings := fs.Bool("accept-findings", false, "sign even definitions with critical poisoning findings (recorded in the signed approval)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usagef("name the lock file: rugwatch lock sign rugwatch.lock.json [SERVER [TOOL…]]")
	}
	path, only := pos[0], pos[1:]
	cfg, err := a.config()
	if err != nil {
		return err
	}
	signer, err := a.loadApprover(cfg, *key)
	if err != nil {
		return err
	}
	ver, err := a.verifier(cfg)
	if err != nil {
		return err
	}
	lock, err := readLock(path)
	if err != nil {
		return err
	}
	policy := a.approvalPolicy(cfg)
	var picked []signatures.Statement
	var blocked []string // subjects with critical findings
	unheld := 0          // approvals with no signature to sign beside
	for _, ap := range signatures.CheckLock(lock, ver, policy) {
		if !lockPicked(ap, only) {
			continue
		}
		subject := visible.Line(ap.Subject())
		switch {
		case slices.Contains(ap.Signers, signer.KeyID()):
			fmt.Fprintf(a.Stdout, "%s: already signed by %s\n", subject, visible.Line(policy.Name(signer.KeyID())))
			continue
		case len(only) == 0 && ap.Tally.Met():
			continue // nothing owed; name it to add a signature anyway
		case len(ap.Signers) == 0:
			unheld++
			fmt.Fprintf(a.Stderr, "rugwatch lock sign: %s has no signature that holds to sign beside; approve it with `rugwatch approve` instead\n", subject)
			continue
		}
		st, err := lockStatement(lock, ap, ver)
		if err != nil {
			return err
		}
		findings := statementFindings(st)
		showStatement(a.Stdout, st, ap, findings)
		// What this signature accepts: the critical findings of the
		// definition as approve finds them, and those the other signers
		// accepted (found against the whole fleet, which a file does not
		// show); each is the signer's own decision, so --accept-findings.
		st.AcceptedFindings = acceptedUnion(st.AcceptedFindings, signatures.AcceptedFindings(findings))
		if len(st.AcceptedFindings) > 0 {
			blocked = append(blocked, subject)
		}
		picked = append(picked, st)
	}
	if len(blocked) > 0 && !*acceptFindings {
		fmt.Fprintf(a.Stderr, "rugwatch lock sign: %s carry critical poisoning findings (shown above); nothing signed. "+
			"If you have read them and still trust the definitions, run again with --accept-findings; that is recorded in the signed approval.\n",
			strings.Join(blocked, ", "))
		return errFindings
	}
	if len(picked) == 0 {
		fmt.Fprintf(a.Stdout, "nothing to sign in %s\n", visible.Line(path))
		if unheld > 0 {
			return errFindings // asked to sign and could not
		}
		return nil
	}
	if !*yes {
		fmt.Fprintf(a.Stdout, "Sign %d approval(s) of %s exactly as shown, with key %s? [y/N] ", len(picked), visible.Line(path), signer.KeyID())
		line, _ := bufio.NewReader(a.Stdin).ReadString('\n')
		if ans := strings.ToLower(strings.TrimSpace(line)); ans != "y" && ans != "yes" {
			fmt.Fprintln(a.Stdout, "not signed")
			return errFindings
		}
	}
	now := time.Now().UTC()
	for _, st := range picked {
		st.ApprovedAt, st.Note = now, *note
		env, err := signer.SignApproval(st)
		if err != nil {
			return fmt.Errorf("signing %s: %w", visible.Line(st.Subject()), err)
		}
		lock.Signatures = append(lock.Signatures, signatures.LockSignature{Server: st.Server, Kind: st.Kind, Tool: st.Tool,
			Digest: st.Digest, KeyID: signer.KeyID(), Envelope: env})
	}
	b, err := lock.Encode()
	if err != nil {
		return errors.New(visible.Line(err.Error()))
	}
	if err := writeLockFile(path, b); err != nil {
		return err
	}
	fmt.Fprintf(a.Stdout, "signed %d approval(s) in %s with key %s\n", len(picked), visible.Line(path), signer.KeyID())
	return nil
}

// lockPicked reports whether ap is among the named SERVER [TOOL…] (all
// when none are named).
func lockPicked(ap signatures.LockApproval, only []string) bool {
	if len(only) == 0 {
		return true
	}
	if ap.Server != only[0] {
		return false
	}
	return len(only) == 1 || slices.Contains(only[1:], ap.Tool)
}

// lockStatement is the statement a counted signature of ap signs, read
// back through the verifier.
func lockStatement(lock signatures.Lock, ap signatures.LockApproval, ver *signatures.Verifier) (signatures.Statement, error) {
	for _, s := range lock.Signatures {
		if s.Server != ap.Server || s.Kind != ap.Kind || s.Tool != ap.Tool || !slices.Contains(ap.Signers, s.KeyID) {
			continue
		}
		st, err := ver.Verify(s.Envelope)
		if err != nil {
			continue
		}
		if seq, ok := st.Bound(); ok && seq == ap.Resolves && st.Names(ap.Kind, ap.Server, ap.Tool, ap.Digest) {
			return st, nil
		}
	}
	return signatures.Statement{}, errors.New("no signature of " + visible.Line(ap.Subject()) + " to sign beside")
}

// statementFindings are the poisoning findings of what st approves, found
// as the monitor finds them for approve to show: detect.Findings of a
// tool's definition, detect.FindingsText of instructions. Launch and
// egress statements have none (approve does not gate them either).
func statementFindings(st signatures.Statement) []rugwatch.Finding {
	switch st.Kind {
	case signatures.KindTool:
		return detect.Findings(st.Definition, detect.FindingContext{Server: st.Server})
	case signatures.KindInstructions:
		var text string
		if json.Unmarshal(st.Definition, &text) == nil {
			return detect.FindingsText(text, "/instructions")
		}
	}
	return nil
}

// acceptedUnion is a, then each of b not in a.
func acceptedUnion(a, b []string) []string {
	out := slices.Clone(a)
	for _, f := range b {
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out
}

// showStatement prints what a co-signature approves, exactly as signed,
// with the findings of its definition.
func showStatement(w io.Writer, st signatures.Statement, ap signatures.LockApproval, findings []rugwatch.Finding) {
	fmt.Fprintf(w, "── %s  %s  signatures %s\n", visible.Line(ap.Subject()), visible.Line(string(st.Digest)), visible.Line(ap.Tally.String()))
	var text string
	if st.Kind == signatures.KindInstructions && json.Unmarshal(st.Definition, &text) == nil {
		for _, line := range strings.Split(visible.Text(text), "\n") {
			fmt.Fprintf(w, "  │ %s\n", line)
		}
	} else {
		printDefinition(w, st.Definition, "  ")
	}
	printFindings(w, "  ", findings)
	for _, f := range st.AcceptedFindings {
		fmt.Fprintf(w, "  accepted by another signer: critical finding %s\n", visible.Line(f))
	}
	if st.ReturnsSecrets {
		fmt.Fprintln(w, "  returns secrets by design")
	}
	fmt.Fprintln(w)
}
