package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/configs"
	"github.com/rugwatch/rugwatch/monitor"
	"github.com/rugwatch/rugwatch/signatures"
	"github.com/rugwatch/rugwatch/store"
)

// backend is what the read and approval commands need. The CLI talks to a
// local backend over the store when no daemon runs, and to the daemon's
// control socket when one does; the daemon serves its own local backend
// on that socket. Either way the command prints the same thing.
type backend interface {
	Status(ctx context.Context, servers []string) (Report, error)
	Check(ctx context.Context, servers []string) (Report, error)
	Server(ctx context.Context, name string) (store.ServerRecord, error)
	Diff(ctx context.Context, server, tool string) (DiffResult, error)
	Approve(ctx context.Context, server string, approvals []SignedApproval, pinLaunch bool) (int, error)
	Revoke(ctx context.Context, server string, tools []string, all bool, reason string) ([]string, error)
	History(ctx context.Context, server string, limit int) ([]rugwatch.Event, error)
	Verify(ctx context.Context) (VerifyReport, error)
	Alerts(ctx context.Context, limit int) (AlertsReport, error)
	RetryAlert(ctx context.Context, id string) error
	TestAlert(ctx context.Context, channel string) ([]store.Delivery, error)
	Close() error
}

// DiffResult is what diff shows.
type DiffResult struct {
	Tools       []ToolDiff                 `json:"tools"`
	Definitions map[string]json.RawMessage `json:"definitions"`
}

// SignedApproval is an approval the CLI signed, for the backend to verify
// and store; the daemon never sees a private key.
type SignedApproval struct {
	Kind     string          `json:"kind,omitempty"` // "tool" (or empty) or "instructions"
	Tool     string          `json:"tool"`
	Digest   rugwatch.Digest `json:"digest"`
	Envelope []byte          `json:"envelope"`
	Note     string          `json:"note,omitempty"`
}

// local is the backend over an open store.
type local struct {
	cfg *configs.Config
	db  *store.DB
	ver *signatures.Verifier
	// poll polls the named servers now and records them.
	poll func(ctx context.Context, servers []configs.Server) error
	// closeDB is set when the backend opened the store itself.
	closeDB bool
	// inTx sees every event this backend appends, in its transaction.
	inTx func(tx *store.Tx, e rugwatch.Event) error
	// deliver runs after anything that may have queued alerts: the CLI
	// attempts them at once, the daemon wakes its dispatcher.
	deliver func(ctx context.Context) error
}

func (l *local) afterWrite(ctx context.Context) error {
	if l.deliver == nil {
		return nil
	}
	return l.deliver(ctx)
}

// appendEvent appends e and hands it to inTx in the same transaction.
func (l *local) appendEvent(tx *store.Tx, e *rugwatch.Event) error {
	if err := tx.AppendEvent(e); err != nil {
		return err
	}
	if l.inTx != nil {
		return l.inTx(tx, *e)
	}
	return nil
}

func (l *local) Close() error {
	if l.closeDB {
		return l.db.Close()
	}
	return nil
}

func (l *local) servers(names []string) ([]configs.Server, error) {
	return selectServers(l.cfg, names)
}

func (l *local) Status(ctx context.Context, names []string) (Report, error) {
	servers, err := l.servers(names)
	if err != nil {
		return Report{}, err
	}
	return storeRecords(l.db, servers)
}

func (l *local) Check(ctx context.Context, names []string) (Report, error) {
	servers, err := l.servers(names)
	if err != nil {
		return Report{}, err
	}
	if err := l.poll(ctx, servers); err != nil {
		return Report{}, err
	}
	if err := l.afterWrite(ctx); err != nil {
		return Report{}, err
	}
	return storeRecords(l.db, servers)
}

func (l *local) Server(ctx context.Context, name string) (store.ServerRecord, error) {
	if _, ok := l.cfg.Server(name); !ok {
		return store.ServerRecord{}, usagef("no server %q in %s (configured: %s)", name, l.cfg.Path, serverNames(l.cfg))
	}
	var rec store.ServerRecord
	err := l.db.View(func(tx *store.Tx) error {
		r, ok, err := tx.Server(name)
		if !ok && err == nil {
			err = fmt.Errorf("server %s has not been checked yet; run `rugwatch check %s` first", name, name)
		}
		rec = r
		return err
	})
	return rec, err
}

func (l *local) Diff(ctx context.Context, server, tool string) (DiffResult, error) {
	res := DiffResult{Tools: []ToolDiff{}, Definitions: map[string]json.RawMessage{}}
	err := l.db.View(func(tx *store.Tx) error {
		rec, ok, err := tx.Server(server)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("server %s has not been checked yet", server)
		}
		var names []string
		if tool != "" {
			if _, ok := rec.Tools[tool]; !ok {
				return usagef("server %s has no tool %q", server, tool)
			}
			names = []string{tool}
		} else {
			for n := range rec.Tools {
				names = append(names, n)
			}
			sort.Strings(names)
		}
		for _, n := range names {
			t := rec.Tools[n]
			if t.State == rugwatch.StateApproved && tool == "" {
				continue
			}
			d := ToolDiff{Server: server, Tool: n, State: t.State, Severity: t.Severity,
				ApprovedDigest: t.ApprovedDigest, ObservedDigest: t.ObservedDigest, Changes: []rugwatch.Change{},
				Findings: append([]rugwatch.Finding{}, t.Findings...)}
			if t.ApprovedDigest != "" && t.ApprovedDigest != t.ObservedDigest {
				check := func(a store.ApprovalRecord) monitor.Approved { return monitor.CheckApproval(l.ver, a) }
				a, ok, err := monitor.FindApproval(tx, check, server, n, t.ApprovedDigest)
				if err != nil {
					return err
				}
				if ok {
					d.Changes = monitor.Diff(a.Definition, t.Definition)
				}
			}
			res.Definitions[n] = t.Definition
			res.Tools = append(res.Tools, d)
		}
		return nil
	})
	return res, err
}

// Approve verifies each signed approval exactly as the monitor will and
// stores it, only if the tool's observed digest is still the one signed.
func (l *local) Approve(ctx context.Context, server string, approvals []SignedApproval, pinLaunch bool) (int, error) {
	now := time.Now().UTC()
	n := 0
	err := l.db.Update(func(tx *store.Tx) error {
		rec, ok, err := tx.Server(server)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("server %s has not been checked yet", server)
		}
		if pinLaunch && len(rec.Launch) > 0 {
			rec.LaunchPinned = rec.Launch
			rec.LaunchDrifted = false
			if err := l.appendEvent(tx, &rugwatch.Event{
				Type: rugwatch.EventToolApproved, Severity: rugwatch.SeverityInfo, Server: server, OccurredAt: now,
				Message: "launch identity pinned: " + string(rec.Launch),
			}); err != nil {
				return err
			}
			n++
		}
		for _, sa := range approvals {
			if sa.Kind == store.KindInstructions {
				if err := l.approveInstructions(tx, &rec, sa, now); err != nil {
					return err
				}
				n++
				continue
			}
			cur, ok := rec.Tools[sa.Tool]
			if !ok || cur.ObservedDigest != sa.Digest {
				return fmt.Errorf("%s/%s changed while you were reviewing; run approve again", server, sa.Tool)
			}
			st, err := l.ver.Verify(sa.Envelope)
			if err != nil {
				return fmt.Errorf("approval of %s/%s does not verify with a trusted key: %w", server, sa.Tool, err)
			}
			if st.Kind != store.KindTool || st.Server != server || st.Tool != sa.Tool || st.Digest != sa.Digest {
				return fmt.Errorf("approval of %s/%s signs something else (%s %s/%s %s)", server, sa.Tool, st.Kind, st.Server, st.Tool, st.Digest)
			}
			if err := tx.PutApproval(store.ApprovalRecord{
				Kind: store.KindTool, Server: server, Tool: sa.Tool, Digest: sa.Digest,
				KeyID: st.KeyID, ApprovedAt: st.ApprovedAt, Envelope: sa.Envelope, Note: st.Note,
			}); err != nil {
				return err
			}
			cur.State = rugwatch.StateApproved
			cur.ApprovedDigest = sa.Digest
			cur.Severity = rugwatch.SeverityInfo
			cur.Changes = nil
			cur.LastChanged = now
			rec.Tools[sa.Tool] = cur
			if err := l.appendEvent(tx, &rugwatch.Event{
				Type: rugwatch.EventToolApproved, Severity: rugwatch.SeverityInfo, Server: server, Tool: sa.Tool,
				ApprovedDigest: sa.Digest, ObservedDigest: sa.Digest, KeyID: st.KeyID, OccurredAt: now, Message: st.Note,
			}); err != nil {
				return err
			}
			n++
		}
		return tx.PutServer(rec)
	})
	if err == nil {
		err = l.afterWrite(ctx)
	}
	return n, err
}

// approveInstructions stores a signed approval of the server's
// instructions, if they are still the ones signed.
func (l *local) approveInstructions(tx *store.Tx, rec *store.ServerRecord, sa SignedApproval, now time.Time) error {
	if rec.InstructionsDigest != sa.Digest {
		return fmt.Errorf("%s instructions changed while you were reviewing; run approve again", rec.Name)
	}
	st, err := l.ver.Verify(sa.Envelope)
	if err != nil {
		return fmt.Errorf("approval of %s instructions does not verify with a trusted key: %w", rec.Name, err)
	}
	if st.Kind != store.KindInstructions || st.Server != rec.Name || st.Digest != sa.Digest {
		return fmt.Errorf("approval of %s instructions signs something else (%s %s %s)", rec.Name, st.Kind, st.Server, st.Digest)
	}
	if err := tx.PutApproval(store.ApprovalRecord{Kind: store.KindInstructions, Server: rec.Name, Digest: sa.Digest,
		KeyID: st.KeyID, ApprovedAt: st.ApprovedAt, Envelope: sa.Envelope, Note: st.Note}); err != nil {
		return err
	}
	rec.InstructionsState = rugwatch.StateApproved
	rec.InstructionsApproved = sa.Digest
	return l.appendEvent(tx, &rugwatch.Event{
		Type: rugwatch.EventToolApproved, Severity: rugwatch.SeverityInfo, Server: rec.Name,
		ApprovedDigest: sa.Digest, ObservedDigest: sa.Digest, KeyID: st.KeyID, OccurredAt: now,
		Message: "server instructions approved",
	})
}

func (l *local) Revoke(ctx context.Context, server string, tools []string, all bool, reason string) ([]string, error) {
	now := time.Now().UTC()
	var done []string
	err := l.db.Update(func(tx *store.Tx) error {
		if all {
			cur, err := tx.Approvals(server)
			if err != nil {
				return err
			}
			for _, ap := range cur {
				if ap.Kind == store.KindTool {
					tools = append(tools, ap.Tool)
				}
			}
		}
		rec, found, err := tx.Server(server)
		if err != nil {
			return err
		}
		for _, name := range tools {
			ap, ok, err := tx.RevokeApproval(server, store.KindTool, name, reason, now)
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("%s/%s: no current approval", server, name)
			}
			if t, ok := rec.Tools[name]; ok {
				t.State = rugwatch.StateRevoked
				t.Severity = rugwatch.SeverityWarning
				t.LastChanged = now
				rec.Tools[name] = t
			}
			if err := l.appendEvent(tx, &rugwatch.Event{
				Type: rugwatch.EventToolRevoked, Severity: rugwatch.SeverityWarning, Server: server, Tool: name,
				ApprovedDigest: ap.Digest, OccurredAt: now, Message: reason,
			}); err != nil {
				return err
			}
			done = append(done, name)
		}
		if found {
			return tx.PutServer(rec)
		}
		return nil
	})
	if err == nil {
		err = l.afterWrite(ctx)
	}
	return done, err
}

func (l *local) History(ctx context.Context, server string, limit int) ([]rugwatch.Event, error) {
	var events []rugwatch.Event
	err := l.db.View(func(tx *store.Tx) error {
		var err error
		events, err = tx.Events(server, limit)
		return err
	})
	if events == nil {
		events = []rugwatch.Event{}
	}
	return events, err
}

func (l *local) Verify(ctx context.Context) (VerifyReport, error) {
	rep := VerifyReport{SchemaVersion: 1, InvalidApprovals: []BadApproval{}}
	n, chainErr := l.db.VerifyChain()
	rep.EventsChecked = n
	if chainErr != nil {
		rep.ChainError = chainErr.Error()
	}
	err := l.db.View(func(tx *store.Tx) error {
		all, err := tx.Approvals("")
		if err != nil {
			return err
		}
		for _, ap := range all {
			rep.ApprovalsChecked++
			if v := monitor.CheckApproval(l.ver, ap); !v.Valid {
				rep.InvalidApprovals = append(rep.InvalidApprovals, BadApproval{Server: ap.Server, Kind: ap.Kind, Tool: ap.Tool, Problem: v.Problem})
			}
		}
		return nil
	})
	rep.OK = chainErr == nil && len(rep.InvalidApprovals) == 0
	return rep, err
}
