package signatures

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/rugwatch/rugwatch"
)

// A lock file (rugwatch.lock.json) is approvals as a file for a git
// repository: every signature of every approval it holds, as the signed
// envelope itself, so the file verifies on its own against trusted_keys.
// It is JSON Lines: a header line, then one line per signature, sorted by
// server, kind, tool, digest and key id. One more signature is one more
// line in a diff; nothing in it depends on when it was written.
//
// The fields beside the envelope (server, kind, tool, digest, key id) are
// what a reviewer reads; CheckLock refuses a line whose envelope signs
// anything else, so they cannot say one thing while the signature says
// another.

// LockHeader is the first line of every lock file.
const LockHeader = `{"rugwatch_lock":1}`

// maxLockBytes bounds a lock file: a few thousand approvals of large
// definitions.
const maxLockBytes = 256 << 20

// LockSignature is one line: one signature of one approval.
type LockSignature struct {
	Server   string          `json:"server"`
	Kind     string          `json:"kind"`
	Tool     string          `json:"tool,omitempty"`
	Digest   rugwatch.Digest `json:"digest"`
	KeyID    string          `json:"key_id"`
	Envelope json.RawMessage `json:"envelope"` // DSSE JSON as signed
	// Line is where the signature sits in the file it was read from (1
	// is the header); 0 for one not read from a file.
	Line int `json:"-"`
}

// Subject is "tool demo/add", "instructions demo", for messages.
func (s LockSignature) Subject() string {
	if s.Tool == "" {
		return s.Kind + " " + s.Server
	}
	return s.Kind + " " + s.Server + "/" + s.Tool
}

// Lock is the signatures of a lock file.
type Lock struct {
	Signatures []LockSignature
}

func compareLock(a, b LockSignature) int {
	return cmp.Or(cmp.Compare(a.Server, b.Server), cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Tool, b.Tool),
		cmp.Compare(a.Digest, b.Digest), cmp.Compare(a.KeyID, b.KeyID), bytes.Compare(a.Envelope, b.Envelope))
}

// Encode writes the lock file: the header, then each signature on a line
// of its own in the one order, each identical line once.
func (l Lock) Encode() ([]byte, error) {
	sigs := slices.Clone(l.Signatures)
	for i := range sigs {
		var b bytes.Buffer
		if err := json.Compact(&b, sigs[i].Envelope); err != nil {
			return nil, fmt.Errorf("lock: envelope of %s by %s: %w", sigs[i].Subject(), sigs[i].KeyID, err)
		}
		sigs[i].Envelope = b.Bytes()
	}
	slices.SortFunc(sigs, compareLock)
	sigs = slices.CompactFunc(sigs, func(a, b LockSignature) bool { return compareLock(a, b) == 0 })
	var out bytes.Buffer
	out.WriteString(LockHeader + "\n")
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	for _, s := range sigs {
		if err := enc.Encode(s); err != nil {
			return nil, fmt.Errorf("lock: %s by %s: %w", s.Subject(), s.KeyID, err)
		}
	}
	return out.Bytes(), nil
}

// ParseLock reads a lock file strictly: the header first, then one JSON
// object per line with exactly the fields of LockSignature, no member
// twice (nor twice in another case). Blank lines are allowed.
func ParseLock(b []byte) (Lock, error) {
	if len(b) > maxLockBytes {
		return Lock{}, fmt.Errorf("lock file of %d bytes, more than %d", len(b), maxLockBytes)
	}
	lines := strings.Split(string(b), "\n")
	var l Lock
	header := false
	for i, line := range lines {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		n := i + 1
		if !header {
			var h struct {
				Version *int `json:"rugwatch_lock"`
			}
			if err := strictDecode([]byte(line), &h); err != nil || h.Version == nil {
				return Lock{}, fmt.Errorf("line %d: not a rugwatch lock file (the first line must be %s)", n, LockHeader)
			}
			if *h.Version != 1 {
				return Lock{}, fmt.Errorf("line %d: lock file version %d; this rugwatch reads version 1", n, *h.Version)
			}
			header = true
			continue
		}
		var s LockSignature
		if err := strictDecode([]byte(line), &s); err != nil {
			return Lock{}, fmt.Errorf("line %d: %w", n, err)
		}
		if s.Server == "" || s.Kind == "" || s.KeyID == "" || len(s.Envelope) == 0 {
			return Lock{}, fmt.Errorf("line %d: a signature needs server, kind, digest, key_id and envelope", n)
		}
		s.Line = n
		l.Signatures = append(l.Signatures, s)
	}
	if !header {
		return Lock{}, fmt.Errorf("empty: not a rugwatch lock file (the first line must be %s)", LockHeader)
	}
	return l, nil
}

// strictDecode decodes one JSON object, refusing duplicate (and
// case-variant duplicate) members, unknown fields and trailing data.
func strictDecode(raw []byte, v any) error {
	if err := CheckMembers(raw, Limits{MaxBytes: maxLockBytes, MaxStringBytes: maxLockBytes}); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("more than one JSON value on the line")
	}
	return nil
}

// LockApproval is one approval of a lock file, checked: the signatures of
// one (server, kind, tool) and what they amount to.
type LockApproval struct {
	Server, Kind, Tool string
	Digest             rugwatch.Digest
	// Signers are the key ids whose signatures count, Tally what they
	// amount to against the server's quorum.
	Signers []string
	Tally   Tally
	// Resolves is the seq the counted signatures are bound to.
	Resolves uint64
	// Problems say what fails: each one fails the file.
	Problems []string
}

// Subject is "tool demo/add", "instructions demo", for messages.
func (a LockApproval) Subject() string {
	return LockSignature{Server: a.Server, Kind: a.Kind, Tool: a.Tool}.Subject()
}

// CheckLock verifies every signature of l with v and each approval's
// signers against p: a signature counts only if it verifies with a
// trusted key, was made by the key its line names, signs exactly the
// server, kind, tool and digest of its line, and is bound to the state the
// approval's other signatures are bound to (one review, one seq).
// Approvals come in the file's order.
func CheckLock(l Lock, v *Verifier, p *Policy) []LockApproval {
	sigs := slices.Clone(l.Signatures)
	slices.SortStableFunc(sigs, func(a, b LockSignature) int {
		return cmp.Or(cmp.Compare(a.Server, b.Server), cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Tool, b.Tool))
	})
	var out []LockApproval
	for i := 0; i < len(sigs); {
		j := i + 1
		for j < len(sigs) && sigs[j].Server == sigs[i].Server && sigs[j].Kind == sigs[i].Kind && sigs[j].Tool == sigs[i].Tool {
			j++
		}
		out = append(out, checkLockApproval(sigs[i:j], v, p))
		i = j
	}
	return out
}

// checkLockApproval checks the signatures of one approval.
func checkLockApproval(sigs []LockSignature, v *Verifier, p *Policy) LockApproval {
	a := LockApproval{Server: sigs[0].Server, Kind: sigs[0].Kind, Tool: sigs[0].Tool, Digest: sigs[0].Digest}
	type counted struct {
		key string
		seq uint64
		at  string
	}
	var good []counted
	for _, s := range sigs {
		at := fmt.Sprintf("line %d: signature by %s", s.Line, s.KeyID)
		if s.Digest != a.Digest {
			a.Problems = append(a.Problems, fmt.Sprintf("%s approves %s, another line approves %s: one approval, one digest", at, s.Digest, a.Digest))
			continue
		}
		st, err := v.Verify(s.Envelope)
		if err != nil {
			a.Problems = append(a.Problems, fmt.Sprintf("%s does not verify: %v", at, err))
			continue
		}
		if st.KeyID != s.KeyID {
			a.Problems = append(a.Problems, fmt.Sprintf("%s was made by key %s", at, st.KeyID))
			continue
		}
		if !st.Names(s.Kind, s.Server, s.Tool, s.Digest) {
			a.Problems = append(a.Problems, fmt.Sprintf("%s signs %s, not what its line says", at, st.Subject()))
			continue
		}
		seq, ok := st.Bound()
		if !ok {
			a.Problems = append(a.Problems, fmt.Sprintf("%s names no state it resolves (signed by an older rugwatch); sign it again", at))
			continue
		}
		good = append(good, counted{st.KeyID, seq, at})
	}
	for _, g := range good {
		a.Resolves = max(a.Resolves, g.seq)
	}
	for _, g := range good {
		if g.seq != a.Resolves {
			a.Problems = append(a.Problems, fmt.Sprintf("%s is bound to seq %d, the others to seq %d: it signed an older state", g.at, g.seq, a.Resolves))
			continue
		}
		a.Signers = append(a.Signers, g.key)
	}
	a.Tally = p.Tally(a.Server, a.Signers)
	if !a.Tally.Met() {
		a.Problems = append(a.Problems, "quorum not met: signatures "+a.Tally.String())
	}
	return a
}
