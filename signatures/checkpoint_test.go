package signatures

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rugwatch/rugwatch"
)

func testCheckpoint() Checkpoint {
	at := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	return Checkpoint{Seq: 42, ChainHead: rugwatch.Digest("sha256:" + strings.Repeat("ab", 32)), Before: at.Add(-90 * 24 * time.Hour), SignedAt: at,
		Withdrawn: []Withdrawal{{Server: "a", Tool: "x", Seq: 7}, {Server: "a", Tool: "y", Seq: 9}, {Server: "b", Seq: 3}}}
}

// A checkpoint verifies with the key that signed it and names it; with
// any byte of its payload changed, under another key, or as an approval
// (and an approval as a checkpoint), it does not: the payload types
// differ, and DSSE signs the type.
func TestCheckpointSignAndVerify(t *testing.T) {
	s := newSigner(t)
	v := NewVerifier([]PublicKey{s.PublicKey()})
	env, err := s.SignCheckpoint(testCheckpoint())
	if err != nil {
		t.Fatal(err)
	}
	cp, err := v.VerifyCheckpoint(env)
	if err != nil || cp.Seq != 42 || cp.KeyID != s.KeyID() || len(cp.Withdrawn) != 3 {
		t.Fatalf("VerifyCheckpoint = %+v, %v", cp, err)
	}
	if _, err := NewVerifier([]PublicKey{newSigner(t).PublicKey()}).VerifyCheckpoint(env); !errors.Is(err, ErrUntrustedKey) {
		t.Errorf("another key's verifier: %v", err)
	}
	var e envelope
	_ = json.Unmarshal(env, &e)
	payload, _ := b64.DecodeString(e.Payload)
	e.Payload = b64.EncodeToString([]byte(strings.Replace(string(payload), `"seq":42`, `"seq":43`, 1)))
	forged, _ := json.Marshal(e)
	if _, err := v.VerifyCheckpoint(forged); !errors.Is(err, ErrBadSignature) {
		t.Errorf("a checkpoint moved to another seq: %v", err)
	}
	if _, err := v.Verify(env); !errors.Is(err, ErrBadEnvelope) {
		t.Errorf("a checkpoint read as an approval: %v", err)
	}
	approval, err := s.SignApproval(testStatement(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.VerifyCheckpoint(approval); !errors.Is(err, ErrBadEnvelope) {
		t.Errorf("an approval read as a checkpoint: %v", err)
	}
	// The same payload under the other type does not verify either.
	_ = json.Unmarshal(env, &e)
	e.PayloadType = PayloadType
	retyped, _ := json.Marshal(e)
	if _, err := v.Verify(retyped); !errors.Is(err, ErrBadSignature) {
		t.Errorf("a checkpoint's signature under the approval type: %v", err)
	}
}

func TestCheckpointRefusesInconsistentStatements(t *testing.T) {
	s := newSigner(t)
	for name, edit := range map[string]func(*Checkpoint){
		"seq 0":            func(c *Checkpoint) { c.Seq = 0 },
		"bad head":         func(c *Checkpoint) { c.ChainHead = "sha256:zz" },
		"unsorted":         func(c *Checkpoint) { c.Withdrawn[0], c.Withdrawn[1] = c.Withdrawn[1], c.Withdrawn[0] },
		"withdrawn later":  func(c *Checkpoint) { c.Withdrawn[2].Seq = 43 },
		"subject twice":    func(c *Checkpoint) { c.Withdrawn[1].Tool = "x" },
		"no time":          func(c *Checkpoint) { c.SignedAt = time.Time{} },
		"withdrawn seq 0":  func(c *Checkpoint) { c.Withdrawn[0].Seq = 0 },
		"no server":        func(c *Checkpoint) { c.Withdrawn[2].Server = "" },
		"seq beyond 2^53":  func(c *Checkpoint) { c.Seq = 1<<53 + 1 },
		"invalid utf-8":    func(c *Checkpoint) { c.Withdrawn[0].Tool = "\xff" },
		"sorted by server": func(c *Checkpoint) { c.Withdrawn[2].Server = "0" },
	} {
		cp := testCheckpoint()
		edit(&cp)
		if _, err := s.SignCheckpoint(cp); err == nil {
			t.Errorf("%s: signed", name)
		}
	}
}
