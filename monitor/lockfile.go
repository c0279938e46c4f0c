package monitor

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/report"
	"github.com/rugwatch/rugwatch/signatures"
	"github.com/rugwatch/rugwatch/store"
)

// Approvals in git: `lock export` writes the store's current approvals as
// a lock file (signatures.Lock), `lock verify --live` compares one with
// what the servers serve, and approvals_from feeds a lock file's
// signatures to the daemon. A signature from a file is no different from
// one `rugwatch approve` sends: it goes through Ledger.Approve, so the
// quorum, a key counting once, the binding to the tool's newest transition
// (an older file put back approves nothing that drifted since) and the
// events all hold as they do for the CLI.

// ExportLock returns the lock file of the current approvals of the named
// servers (every configured one if none), with every signature each
// holds.
func (l *Ledger) ExportLock(ctx context.Context, servers []string) ([]byte, error) {
	refs, err := l.selectServers(servers)
	if err != nil {
		return nil, err
	}
	var lock signatures.Lock
	err = l.DB.View(func(tx *store.Tx) error {
		for _, s := range refs {
			aps, err := tx.Approvals(s.Name)
			if err != nil {
				return err
			}
			for _, ap := range aps {
				add := func(key string, env []byte, first bool) {
					lock.Signatures = append(lock.Signatures, signatures.LockSignature{Server: ap.Server, Kind: ap.Kind,
						Tool: ap.Tool, Digest: ap.Digest, KeyID: key, First: first, Envelope: bytes.Clone(env)})
				}
				// The record's own signature is the first: the file says
				// so, as CheckLock counts the cosignatures from it.
				add(ap.KeyID, ap.Envelope, true)
				for _, c := range ap.Cosignatures {
					add(c.KeyID, c.Envelope, false)
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading approvals: %w", err)
	}
	return lock.Encode()
}

// CompareLive says where the servers of rep (a check of every server the
// lock names) no longer match lock: a tool or instructions observed under
// another digest than the one approved, a tool approved that is no longer
// listed, a tool listed or instructions sent that the file does not
// approve, a server not reached. Egress approvals are behaviour, not
// listings: a poll does not show them, so they are left to the daemon.
func CompareLive(lock signatures.Lock, rep report.Report) []report.LockMismatch {
	type key struct{ server, kind, tool string }
	locked := map[key]rugwatch.Digest{}
	lockedTools := map[string][]string{} // by server
	for _, s := range lock.Signatures {
		k := key{s.Server, s.Kind, s.Tool}
		if _, dup := locked[k]; !dup && s.Kind == store.KindTool {
			lockedTools[s.Server] = append(lockedTools[s.Server], s.Tool)
		}
		locked[k] = s.Digest
	}
	out := []report.LockMismatch{}
	for _, srv := range rep.Servers {
		if !srv.Reachable {
			out = append(out, report.LockMismatch{Server: srv.Name, Kind: store.KindTool, Problem: "server not reached: " + srv.Error})
			continue
		}
		listed := map[string]bool{}
		for _, t := range srv.Tools {
			if t.State == rugwatch.StateRemoved {
				continue
			}
			listed[t.Name] = true
			want, ok := locked[key{srv.Name, store.KindTool, t.Name}]
			switch {
			case !ok:
				out = append(out, report.LockMismatch{Server: srv.Name, Kind: store.KindTool, Tool: t.Name, Observed: string(t.ObservedDigest),
					Problem: "listed by the server, not approved in the file"})
			case want != t.ObservedDigest:
				out = append(out, report.LockMismatch{Server: srv.Name, Kind: store.KindTool, Tool: t.Name, Locked: string(want),
					Observed: string(t.ObservedDigest), Problem: "the server now serves another definition"})
			}
		}
		switch want, ok := locked[key{srv.Name, store.KindInstructions, ""}]; {
		case ok && want != srv.InstructionsDigest:
			out = append(out, report.LockMismatch{Server: srv.Name, Kind: store.KindInstructions, Locked: string(want),
				Observed: string(srv.InstructionsDigest), Problem: "the server now sends other instructions"})
		case !ok && srv.InstructionsDigest != "":
			// What the model reads first, unreviewed: as much a
			// mismatch as a tool the file does not approve.
			out = append(out, report.LockMismatch{Server: srv.Name, Kind: store.KindInstructions,
				Observed: string(srv.InstructionsDigest), Problem: "instructions sent by the server, not approved in the file"})
		}
		for _, tool := range lockedTools[srv.Name] {
			if !listed[tool] {
				out = append(out, report.LockMismatch{Server: srv.Name, Kind: store.KindTool, Tool: tool,
					Locked: string(locked[key{srv.Name, store.KindTool, tool}]), Problem: "approved in the file, no longer listed by the server"})
			}
		}
	}
	slices.SortFunc(out, func(a, b report.LockMismatch) int {
		return cmp.Or(cmp.Compare(a.Server, b.Server), cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Tool, b.Tool))
	})
	return out
}

// LockFollower keeps the daemon's approvals fed from one lock file
// (approvals_from). Each Pass offers every signature of the file to the
// Ledger; one that already counts towards its approval is left alone, so
// a pass that finds nothing new writes nothing (one merely stored, of a
// state since drifted from, is offered again). A refusal (the tool drifted since, a
// replayed signature, an unknown server) is reported once per signature
// and reason, not on every pass. Safe for one caller at a time.
type LockFollower struct {
	Path string

	mu     sync.Mutex
	stat   lockStat
	sum    [32]byte
	lock   signatures.Lock
	err    error
	loaded bool
	said   map[[32]byte]string
}

// lockStat is what tells a changed file without reading it.
type lockStat struct {
	size  int64
	mtime time.Time
	ok    bool
}

func statLock(path string) lockStat {
	fi, err := os.Stat(path)
	if err != nil {
		return lockStat{}
	}
	return lockStat{size: fi.Size(), mtime: fi.ModTime(), ok: true}
}

// Changed reports whether the file looks different from when it was last
// read: a stat, no read.
func (f *LockFollower) Changed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return !f.loaded || statLock(f.Path) != f.stat
}

// LockPass is what one Pass did.
type LockPass struct {
	// Read is set when the file was read this pass (first, changed, or
	// forced); Changed when what it holds differs from the last read.
	Read, Changed bool
	// Applied are the signatures the Ledger took this pass, Refused the
	// ones it refused for a reason not reported before: "tool demo/add
	// by KEY (line N): reason". Held counts signatures that already
	// count towards their approval (Ledger.holds).
	Applied []string
	Refused []string
	Held    int
}

// Pass reads the file if it changed (always with reread) and offers each
// of its signatures to l. An unreadable or invalid file is an error once
// per content; the approvals already taken stay.
func (f *LockFollower) Pass(ctx context.Context, l *Ledger, reread bool) (LockPass, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var p LockPass
	if st := statLock(f.Path); reread || !f.loaded || st != f.stat {
		p.Read = true
		f.stat, f.loaded = st, true
		b, err := signatures.ReadLockFile(f.Path)
		sum := sha256.Sum256(b)
		if err != nil {
			sum = sha256.Sum256([]byte(err.Error()))
		}
		if sum != f.sum || f.err != nil && err == nil {
			p.Changed = true
			f.sum = sum
			f.lock, f.err = signatures.Lock{}, err
			if err == nil {
				f.lock, f.err = signatures.ParseLock(b)
			}
			if f.err != nil {
				f.err = fmt.Errorf("approvals_from %s: %w", f.Path, f.err)
				return p, f.err
			}
		}
	}
	if f.err != nil {
		return p, nil // said when it was read
	}
	if f.said == nil {
		f.said = map[[32]byte]string{}
	}
	// One lookup per signature, not a scan of the config: a fleet of
	// thousands of servers has lock files of thousands of lines.
	configured := make(map[string]bool, len(l.Servers))
	for _, s := range l.Servers {
		configured[s.Name] = true
	}
	seen := map[[32]byte]bool{}
	for _, s := range f.lock.Signatures {
		id := lockLineID(s)
		seen[id] = true
		what := fmt.Sprintf("%s by %s (line %d)", s.Subject(), s.KeyID, s.Line)
		held, err := l.offer(ctx, s, configured[s.Server])
		switch {
		case err != nil:
			if msg := err.Error(); f.said[id] != msg {
				f.said[id] = msg
				p.Refused = append(p.Refused, what+": "+msg)
			}
		case held:
			p.Held++
			f.said[id] = ""
		default:
			p.Applied = append(p.Applied, what)
			f.said[id] = ""
		}
	}
	for id := range f.said {
		if !seen[id] {
			delete(f.said, id)
		}
	}
	return p, nil
}

// lockLineID names one signature line by everything on it.
func lockLineID(s signatures.LockSignature) [32]byte {
	h := sha256.New()
	for _, part := range []string{s.Server, s.Kind, s.Tool, string(s.Digest), s.KeyID, string(s.Envelope)} {
		fmt.Fprintf(h, "%d:%s", len(part), part)
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

// offer hands one signature of a lock file to Approve, unless the store
// already holds it (held). configured says whether the config names its
// server.
func (l *Ledger) offer(ctx context.Context, s signatures.LockSignature, configured bool) (held bool, err error) {
	if !configured {
		return false, fmt.Errorf("no server %q in %s", s.Server, l.Where)
	}
	switch s.Kind {
	case store.KindTool, store.KindInstructions, store.KindEgress, store.KindLaunch:
	default:
		return false, fmt.Errorf("unknown kind %q", s.Kind)
	}
	if (s.Kind == store.KindTool) != (s.Tool != "") {
		return false, fmt.Errorf("kind %s with tool %q", s.Kind, s.Tool)
	}
	err = l.DB.View(func(tx *store.Tx) error {
		held, err = l.holds(tx, s)
		return err
	})
	if err != nil || held {
		return held, err
	}
	_, err = l.Approve(ctx, s.Server, []SignedApproval{{Kind: s.Kind, Tool: s.Tool, Digest: s.Digest, Envelope: bytes.Clone(s.Envelope)}}, false)
	return false, err
}

// holds reports whether a signature by the key of s counts now towards
// the approval of what s signs, as it is observed (signedSoFar). A key's
// signature merely stored is not enough: a launch approval stays in the
// store through a drift and back, and a signature it holds of the same
// digest, bound to the state before, counts none; a fresh one of the
// file must then reach Approve.
func (l *Ledger) holds(tx *store.Tx, s signatures.LockSignature) (bool, error) {
	rec, ok, err := tx.Server(s.Server)
	if err != nil || !ok {
		return false, err
	}
	var sub subject
	switch s.Kind {
	case store.KindTool:
		t, ok := rec.Tools[s.Tool]
		if !ok {
			return false, nil
		}
		sub = toolSubject(rec.Name, s.Tool, t)
	case store.KindInstructions:
		sub = instructionsSubject(rec)
	case store.KindEgress:
		if rec.Egress == nil {
			return false, nil
		}
		sub = signedEgressSubject(rec, s.Digest)
	case store.KindLaunch:
		sub = launchSubject(rec)
	}
	if sub.digest != s.Digest {
		return false, nil
	}
	so, counts, err := l.signedSoFar(tx, s.Server, sub)
	return counts && slices.Contains(so.signers, s.KeyID), err
}
