package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/rugwatch/rugwatch"
)

// Approval kinds.
const (
	KindTool         = "tool"
	KindInstructions = "instructions"
	KindEgress       = "egress" // a server's approved egress destinations (tool "")
	KindLaunch       = "launch" // a server's approved launch and remote identity (tool "")
)

// ApprovalRecord is one signed approval as stored. The store never checks
// the envelope; callers verify it against trusted keys before relying on
// Digest.
type ApprovalRecord struct {
	Kind   string // KindTool, KindInstructions, KindEgress or KindLaunch
	Server string
	Tool   string // "" but for KindTool
	Digest rugwatch.Digest
	KeyID  string
	// ApprovedAt is the approver's claimed time, kept as given.
	ApprovedAt time.Time
	// Envelope is the DSSE JSON exactly as signed.
	Envelope []byte
	Note     string
	// RevokedAt, RevokedReason and Superseded are set only on history
	// records: withdrawn by RevokeApproval, or replaced by a later
	// PutApproval.
	RevokedAt     time.Time
	RevokedReason string
	Superseded    bool
	// Cosignatures are the further signatures of this very digest, each
	// by another key, in the order they came: a quorum of approvers
	// builds one record (Envelope is the first signature). A drift or a
	// revocation moves the record, and with it every signature, to the
	// history.
	Cosignatures []Cosignature `json:",omitempty"`
}

// Cosignature is one further signature of an approval record's digest.
type Cosignature struct {
	KeyID      string
	ApprovedAt time.Time
	Envelope   []byte // DSSE JSON exactly as signed
	Note       string `json:",omitempty"`
}

// Envelopes returns every signature of the record, first signer first.
func (a ApprovalRecord) Envelopes() [][]byte {
	out := make([][]byte, 0, 1+len(a.Cosignatures))
	out = append(out, a.Envelope)
	for _, c := range a.Cosignatures {
		out = append(out, c.Envelope)
	}
	return out
}

// approvalKey is kind NUL tool: kinds hold no NUL, so the split is
// unambiguous, and instructions approvals (tool "") still get a non-empty
// key.
func approvalKey(kind, tool string) []byte {
	k := make([]byte, 0, len(kind)+1+len(tool))
	k = append(k, kind...)
	k = append(k, 0)
	return append(k, tool...)
}

func checkApprovalKey(server, kind, tool string) error {
	if server == "" {
		return errors.New("approval: empty server")
	}
	switch kind {
	case KindTool:
		if tool == "" {
			return errors.New("approval: tool approval without a tool name")
		}
	case KindInstructions, KindEgress, KindLaunch:
		if tool != "" {
			return fmt.Errorf("approval: %s approval names tool %q", kind, tool)
		}
	default:
		return fmt.Errorf("approval: unknown kind %q", kind)
	}
	return nil
}

func decodeApproval(v []byte) (ApprovalRecord, error) {
	var a ApprovalRecord
	err := json.Unmarshal(v, &a)
	return a, err
}

// Approval returns the current approval for (server, kind, tool); false if
// there is none.
func (t *Tx) Approval(server, kind, tool string) (ApprovalRecord, bool, error) {
	a, _, ok, err := t.current(server, kind, tool)
	return a, ok, err
}

// current reads the current approval for (server, kind, tool) and the
// server's bucket it lives in; false if there is none.
func (t *Tx) current(server, kind, tool string) (ApprovalRecord, kvBucket, bool, error) {
	b, err := t.bucket(bucketApprovals)
	if err != nil {
		return ApprovalRecord{}, nil, false, err
	}
	if err := checkApprovalKey(server, kind, tool); err != nil {
		return ApprovalRecord{}, nil, false, err
	}
	sb := b.Bucket([]byte(server))
	if sb == nil {
		return ApprovalRecord{}, nil, false, nil
	}
	v := sb.Get(approvalKey(kind, tool))
	if v == nil {
		return ApprovalRecord{}, sb, false, nil
	}
	a, err := decodeApproval(v)
	if err != nil {
		return ApprovalRecord{}, nil, false, fmt.Errorf("decode approval %s/%s %q: %w", server, kind, tool, err)
	}
	return a, sb, true, nil
}

// Approvals returns the current approvals of server, or of every server if
// server is "", sorted by server, kind, tool.
func (t *Tx) Approvals(server string) ([]ApprovalRecord, error) {
	b, err := t.bucket(bucketApprovals)
	if err != nil {
		return nil, err
	}
	var out []ApprovalRecord
	collect := func(name []byte, sb kvBucket) error {
		return sb.ForEach(func(k, v []byte) error {
			a, err := decodeApproval(v)
			if err != nil {
				return fmt.Errorf("decode approval %s %q: %w", name, bytes.ReplaceAll(k, []byte{0}, []byte("/")), err)
			}
			out = append(out, a)
			return nil
		})
	}
	if server != "" {
		if sb := b.Bucket([]byte(server)); sb != nil {
			err = collect([]byte(server), sb)
		}
		return out, err
	}
	err = b.ForEachBucket(func(name []byte) error { return collect(name, b.Bucket(name)) })
	return out, err
}

// PutApproval makes a the current approval for its key. A previous current
// approval moves to the history, marked Superseded.
func (t *Tx) PutApproval(a ApprovalRecord) error {
	b, err := t.bucket(bucketApprovals)
	if err != nil {
		return err
	}
	if err := checkApprovalKey(a.Server, a.Kind, a.Tool); err != nil {
		return err
	}
	if !a.Digest.Valid() {
		return fmt.Errorf("approval %s/%s %q: invalid digest %q", a.Server, a.Kind, a.Tool, a.Digest)
	}
	sb, err := b.CreateBucketIfNotExists([]byte(a.Server))
	if err != nil {
		return fmt.Errorf("create approvals bucket %q: %w", a.Server, err)
	}
	key := approvalKey(a.Kind, a.Tool)
	if old := sb.Get(key); old != nil {
		prev, err := decodeApproval(old)
		if err != nil {
			return fmt.Errorf("decode approval %s/%s %q: %w", a.Server, a.Kind, a.Tool, err)
		}
		prev.Superseded = true
		if err := t.appendHistory(prev); err != nil {
			return err
		}
	}
	v, err := encode(a)
	if err != nil {
		return fmt.Errorf("encode approval %s/%s %q: %w", a.Server, a.Kind, a.Tool, err)
	}
	if err := sb.Put(key, v); err != nil {
		return fmt.Errorf("put approval %s/%s %q: %w", a.Server, a.Kind, a.Tool, err)
	}
	t.changed(a.Server)
	return nil
}

// RevokeApproval withdraws the current approval for (server, kind, tool),
// moving it to the history with RevokedAt (at, or now if zero) and reason.
// It returns the revoked record; false if there was no current approval.
func (t *Tx) RevokeApproval(server, kind, tool, reason string, at time.Time) (ApprovalRecord, bool, error) {
	a, sb, ok, err := t.current(server, kind, tool)
	if err != nil || !ok {
		return ApprovalRecord{}, false, err
	}
	if at.IsZero() {
		at = t.db.now().UTC()
	}
	a.RevokedAt = at
	a.RevokedReason = reason
	if err := t.appendHistory(a); err != nil {
		return ApprovalRecord{}, false, err
	}
	if err := sb.Delete(approvalKey(kind, tool)); err != nil {
		return ApprovalRecord{}, false, fmt.Errorf("delete approval %s/%s %q: %w", server, kind, tool, err)
	}
	t.changed(server)
	return a, true, nil
}

func (t *Tx) appendHistory(a ApprovalRecord) error {
	hb, err := t.bucket(bucketApprovalHistory)
	if err != nil {
		return err
	}
	sb, err := hb.CreateBucketIfNotExists([]byte(a.Server))
	if err != nil {
		return fmt.Errorf("create approval history bucket %q: %w", a.Server, err)
	}
	n, err := sb.NextSequence()
	if err != nil {
		return fmt.Errorf("approval history %q: next sequence: %w", a.Server, err)
	}
	v, err := encode(a)
	if err != nil {
		return fmt.Errorf("encode approval %s/%s %q: %w", a.Server, a.Kind, a.Tool, err)
	}
	if err := sb.Put(u64(n), v); err != nil {
		return fmt.Errorf("put approval history %s/%s %q: %w", a.Server, a.Kind, a.Tool, err)
	}
	return nil
}

// ApprovalHistory returns the superseded and revoked approvals of server
// (every server if ""), for one tool or, with tool "", for every tool and
// the instructions. Records come per server in name order, oldest first.
// Instructions history is the records with Kind KindInstructions.
func (t *Tx) ApprovalHistory(server, tool string) ([]ApprovalRecord, error) {
	hb, err := t.bucket(bucketApprovalHistory)
	if err != nil {
		return nil, err
	}
	var out []ApprovalRecord
	collect := func(name []byte) error {
		sb := hb.Bucket(name)
		if sb == nil {
			return nil
		}
		return sb.ForEach(func(_, v []byte) error {
			a, err := decodeApproval(v)
			if err != nil {
				return fmt.Errorf("decode approval history of %q: %w", name, err)
			}
			if tool == "" || a.Tool == tool {
				out = append(out, a)
			}
			return nil
		})
	}
	if server != "" {
		return out, collect([]byte(server))
	}
	err = hb.ForEachBucket(collect)
	return out, err
}

// AddCosignature adds c to the current approval of (server, kind, tool),
// which must be of digest: one more signature of the same approval, not a
// new approval, so nothing moves to the history.
func (t *Tx) AddCosignature(server, kind, tool string, digest rugwatch.Digest, c Cosignature) error {
	a, sb, ok, err := t.current(server, kind, tool)
	if err != nil {
		return err
	}
	if !ok || a.Digest != digest {
		return fmt.Errorf("approval %s/%s %q: no current approval of %s to add a signature to", server, kind, tool, digest)
	}
	a.Cosignatures = append(a.Cosignatures, c)
	v, err := encode(a)
	if err != nil {
		return fmt.Errorf("encode approval %s/%s %q: %w", server, kind, tool, err)
	}
	if err := sb.Put(approvalKey(kind, tool), v); err != nil {
		return fmt.Errorf("put approval %s/%s %q: %w", server, kind, tool, err)
	}
	t.changed(server)
	return nil
}
