package signatures

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/rugwatch/rugwatch"
)

// CheckpointPayloadType is the DSSE payload type of a checkpoint of the
// event log. The DSSE pre-authentication encoding binds it, so a
// checkpoint's signature never verifies as an approval's, nor an
// approval's as a checkpoint's.
const CheckpointPayloadType = "application/vnd.rugwatch.checkpoint.v1+json"

// Checkpoint is what the daemon signs before retention cuts the oldest
// events from the log: the chain stood at Seq with head ChainHead (the
// digest of record Seq as stored), the records up to it were verified,
// and they are cut. Verification of what is kept starts from it: the
// first kept record must carry ChainHead as its prev.
type Checkpoint struct {
	Seq       uint64          `json:"seq"`
	ChainHead rugwatch.Digest `json:"chain_head"`
	// Before is the retention's horizon: every cut event occurred
	// before it.
	Before   time.Time `json:"before"`
	SignedAt time.Time `json:"signed_at"`
	KeyID    string    `json:"key_id"`
	// Withdrawn keeps, of the cut events and those cut before, the seq of
	// the newest drift or revocation of each tool (Tool "" for a server's
	// instructions): the replay check of approvals needs them once the
	// events are gone. Sorted by server, then tool, each subject once.
	Withdrawn []Withdrawal `json:"withdrawn,omitempty"`
	// EgressApproved keeps, of the cut events and those cut before, the
	// seq of each server's newest egress.approved (Tool empty): that a
	// server's destinations were ever pinned is the log's word, and a pin
	// deleted from the store must still read as missing once the event is
	// gone. Sorted by server, each once.
	EgressApproved []Withdrawal `json:"egress_approved,omitempty"`
}

// Withdrawal is the newest drift or revocation of one subject.
type Withdrawal struct {
	Server string `json:"server"`
	Tool   string `json:"tool,omitempty"`
	Seq    uint64 `json:"seq"`
}

// SortWithdrawals puts ws in the order a Checkpoint carries them.
func SortWithdrawals(ws []Withdrawal) {
	slices.SortFunc(ws, func(a, b Withdrawal) int {
		return cmp.Or(cmp.Compare(a.Server, b.Server), cmp.Compare(a.Tool, b.Tool))
	})
}

// ErrBadCheckpoint: the checkpoint is inconsistent in itself.
var ErrBadCheckpoint = errors.New("invalid checkpoint")

func (cp *Checkpoint) check() error {
	if cp.Seq == 0 || cp.Seq > maxResolves {
		return fmt.Errorf("seq %d is not between 1 and 2^53", cp.Seq)
	}
	if !cp.ChainHead.Valid() {
		return fmt.Errorf("chain_head %q is not sha256:<64 hex>", cp.ChainHead)
	}
	if cp.Before.IsZero() || cp.SignedAt.IsZero() {
		return errors.New("before or signed_at is zero")
	}
	if !utf8.ValidString(cp.KeyID) {
		return errors.New("key_id is not valid UTF-8")
	}
	for i, w := range cp.EgressApproved {
		if !utf8.ValidString(w.Server) || w.Server == "" || w.Tool != "" {
			return fmt.Errorf("egress_approved[%d]: server empty or not valid UTF-8, or a tool named", i)
		}
		if w.Seq == 0 || w.Seq > cp.Seq {
			return fmt.Errorf("egress_approved[%d]: seq %d is not between 1 and the checkpoint's %d", i, w.Seq, cp.Seq)
		}
		if i > 0 && cp.EgressApproved[i-1].Server >= w.Server {
			return fmt.Errorf("egress_approved[%d]: not sorted, or a server twice", i)
		}
	}
	for i, w := range cp.Withdrawn {
		if !utf8.ValidString(w.Server) || !utf8.ValidString(w.Tool) || w.Server == "" {
			return fmt.Errorf("withdrawn[%d]: server empty or not valid UTF-8", i)
		}
		if w.Seq == 0 || w.Seq > cp.Seq {
			return fmt.Errorf("withdrawn[%d]: seq %d is not between 1 and the checkpoint's %d", i, w.Seq, cp.Seq)
		}
		if i > 0 {
			p := cp.Withdrawn[i-1]
			if cmp.Or(cmp.Compare(p.Server, w.Server), cmp.Compare(p.Tool, w.Tool)) >= 0 {
				return fmt.Errorf("withdrawn[%d]: not sorted, or a subject twice", i)
			}
		}
	}
	return nil
}

// SignCheckpoint sets cp.KeyID to the signer's and returns a DSSE
// envelope whose payload is the canonical JSON of cp.
func (s *Signer) SignCheckpoint(cp Checkpoint) ([]byte, error) {
	cp.KeyID = s.keyID
	cp.Before, cp.SignedAt = cp.Before.UTC(), cp.SignedAt.UTC()
	if err := cp.check(); err != nil {
		return nil, fmt.Errorf("sign checkpoint: %w", err)
	}
	return s.seal(CheckpointPayloadType, cp, "sign checkpoint")
}

// VerifyCheckpoint returns the checkpoint of envelope if it parses
// strictly, is of CheckpointPayloadType, a trusted key's signature
// verifies over it, its payload is canonical JSON naming that key, and it
// is consistent. Errors wrap ErrBadEnvelope, ErrUntrustedKey,
// ErrBadSignature or ErrBadCheckpoint.
func (v *Verifier) VerifyCheckpoint(envelopeJSON []byte) (Checkpoint, error) {
	payload, signer, err := v.open(envelopeJSON, CheckpointPayloadType)
	if err != nil {
		return Checkpoint{}, err
	}
	canon, err := Canonical(payload, Limits{})
	if err != nil {
		return Checkpoint{}, fmt.Errorf("%w: %w", ErrBadCheckpoint, err)
	}
	if !bytes.Equal(canon, payload) {
		return Checkpoint{}, fmt.Errorf("%w: payload is not canonical JSON", ErrBadCheckpoint)
	}
	var cp Checkpoint
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cp); err != nil {
		return Checkpoint{}, fmt.Errorf("%w: decode: %w", ErrBadCheckpoint, err)
	}
	if cp.KeyID != signer {
		return Checkpoint{}, fmt.Errorf("%w: names key %s but was signed by %s", ErrBadCheckpoint, cp.KeyID, signer)
	}
	if err := cp.check(); err != nil {
		return Checkpoint{}, fmt.Errorf("%w: %w", ErrBadCheckpoint, err)
	}
	return cp, nil
}
