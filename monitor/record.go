package monitor

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"time"

	"github.com/rugwatch/rugwatch"
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
	DB               *store.DB
	Verifier         Verifier
	Signer           Signer // nil unless approve_first_seen
	UnreachableAfter int
	Now              func() time.Time
	// InTx, when set, runs for every event right after it is appended,
	// inside the same transaction: the alert outbox queues its deliveries
	// there, so a crash can never record a drift and lose its alerts.
	InTx func(tx *store.Tx, e rugwatch.Event) error

	// index is every server's tool names, for shadowing findings; only
	// touched inside the store's single write transaction.
	index *ToolIndex
	// verified remembers approvals whose signature was checked, by the
	// hash of the envelope and the record around it: a fleet's approvals
	// are re-read on every poll, and ed25519 would otherwise dominate a
	// steady-state cycle. Edited bytes hash differently and are checked
	// again. Only touched inside the store's write transaction.
	verified map[[32]byte]Approved
}

// check is CheckApproval through the cache of verified approvals.
func (r *Recorder) check(a store.ApprovalRecord) Approved {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00", a.Kind, a.Server, a.Tool, a.Digest)
	h.Write(a.Envelope)
	var key [32]byte
	copy(key[:], h.Sum(nil))
	if v, ok := r.verified[key]; ok {
		return v
	}
	v := CheckApproval(r.Verifier, a)
	if v.Valid {
		if r.verified == nil || len(r.verified) > 1<<20 {
			r.verified = map[[32]byte]Approved{}
		}
		r.verified[key] = v
	}
	return v
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
func (r *Recorder) Record(server, transport string, l *Listing, pollErr error) (store.ServerRecord, []rugwatch.Event, error) {
	now := time.Now().UTC()
	if r.Now != nil {
		now = r.Now().UTC()
	}
	var out Outcome
	err := r.DB.Update(func(tx *store.Tx) error {
		prev, found, err := tx.Server(server)
		if err != nil {
			return err
		}
		in := Input{
			Server: server, Transport: transport, Listing: l, PollErr: pollErr, Now: now,
			UnreachableAfter: r.UnreachableAfter, FirstSight: r.Signer != nil,
			Approvals: map[string]Approved{}, Revoked: map[string]Approved{},
		}
		if found {
			in.Prev = &prev
		}
		if r.index == nil {
			// Loaded once; kept current below. Reading every server's
			// record on every poll would make a fleet's cycle quadratic.
			all, err := tx.Servers()
			if err != nil {
				return err
			}
			r.index = NewToolIndex(nil)
			for _, o := range all {
				r.index.SetServer(o.Name, toolNames(o))
			}
		}
		in.Index = r.index
		current, err := tx.Approvals(server)
		if err != nil {
			return err
		}
		for _, a := range current {
			switch a.Kind {
			case store.KindTool:
				in.Approvals[a.Tool] = r.check(a)
			case store.KindInstructions:
				ia := r.check(a)
				in.Instructions = &ia
			}
		}
		// Drifted tools (also those removed while drifted) are diffed
		// against the approval drift withdrew.
		for name, t := range prev.Tools {
			drifted := t.State == rugwatch.StateDrifted || (t.State == rugwatch.StateRemoved && t.PrevState == rugwatch.StateDrifted)
			if !drifted || t.ApprovedDigest == "" {
				continue
			}
			a, ok, err := FindApproval(tx, r.check, server, name, t.ApprovedDigest)
			if err != nil {
				return err
			}
			if ok {
				in.Revoked[name] = a
			}
		}
		out = Evaluate(in)
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
		if out.ApproveInstructions && l != nil && l.Instructions != nil {
			def, _ := json.Marshal(*l.Instructions)
			canon, err := signatures.Canonical(def, signatures.Limits{})
			if err != nil {
				return err
			}
			env, err := r.Signer.SignApproval(signatures.Statement{
				Kind: store.KindInstructions, Server: server, Digest: l.InstructionsDigest, Definition: canon,
				ApprovedAt: now, Note: "approved on first sight (approve_first_seen)",
			})
			if err != nil {
				return fmt.Errorf("signing first-sight approval of %s instructions: %w", server, err)
			}
			if err := tx.PutApproval(store.ApprovalRecord{Kind: store.KindInstructions, Server: server, Digest: l.InstructionsDigest,
				KeyID: r.Signer.KeyID(), ApprovedAt: now, Envelope: env, Note: "approved on first sight"}); err != nil {
				return err
			}
			out.Server.InstructionsState = rugwatch.StateApproved
			out.Server.InstructionsApproved = l.InstructionsDigest
		}
		for _, t := range out.Approve {
			// First sight means first: a tool with any approval history
			// (approved, drifted, revoked before) is never approved
			// without a human, whatever the record says now.
			hist, err := tx.ApprovalHistory(server, t.Name)
			if err != nil {
				return err
			}
			if len(hist) > 0 {
				continue
			}
			env, err := r.Signer.SignApproval(signatures.Statement{
				Kind: store.KindTool, Server: server, Tool: t.Name, Digest: t.Digest,
				Definition: t.Canonical, ApprovedAt: now, Note: "approved on first sight (approve_first_seen)",
			})
			if err != nil {
				return fmt.Errorf("signing first-sight approval of %s/%s: %w", server, t.Name, err)
			}
			if err := tx.PutApproval(store.ApprovalRecord{
				Kind: store.KindTool, Server: server, Tool: t.Name, Digest: t.Digest, KeyID: r.Signer.KeyID(),
				ApprovedAt: now, Envelope: env, Note: "approved on first sight",
			}); err != nil {
				return err
			}
			rec := out.Server.Tools[t.Name]
			rec.State = rugwatch.StateApproved
			rec.ApprovedDigest = t.Digest
			out.Server.Tools[t.Name] = rec
			out.Events = append(out.Events, rugwatch.Event{
				Type: rugwatch.EventToolApproved, Severity: rugwatch.SeverityInfo, Server: server, Tool: t.Name,
				ApprovedDigest: t.Digest, ObservedDigest: t.Digest, KeyID: r.Signer.KeyID(), OccurredAt: now,
				Message: "approved on first sight (approve_first_seen)",
			})
		}
		if err := tx.PutServer(out.Server); err != nil {
			return err
		}
		r.index.SetServer(server, toolNames(out.Server))
		for i := range out.Events {
			if err := tx.AppendEvent(&out.Events[i]); err != nil {
				return err
			}
			if r.InTx != nil {
				if err := r.InTx(tx, out.Events[i]); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return store.ServerRecord{}, nil, fmt.Errorf("recording poll of %s: %w", server, err)
	}
	return out.Server, out.Events, nil
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
	if st.Server != a.Server || st.Tool != a.Tool || st.Kind != a.Kind || st.Digest != a.Digest {
		out.Problem = fmt.Sprintf("signed statement names %s %s/%s %s, record says %s %s/%s %s",
			st.Kind, st.Server, st.Tool, st.Digest, a.Kind, a.Server, a.Tool, a.Digest)
		return out
	}
	out.Definition = st.Definition
	out.Valid = true
	return out
}

// FindApproval finds the verified approval of a tool under digest: the
// current one, else the newest in history (a drifted or revoked tool's
// approval lives there). check verifies a record.
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
