package signatures

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
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

// maxLockBytes bounds a lock file, checked before it is read: thousands
// of approvals of definitions of a few KiB each, with room to spare. A
// file larger than that is refused, not read (a read of it would cost its
// size several times over).
const maxLockBytes = 64 << 20

// maxLockLine bounds one line: an envelope as large as Verify takes, and
// the fields beside it.
const maxLockLine = maxEnvelope + 64<<10

// utf8BOM is what some editors put before a UTF-8 file's first byte.
const utf8BOM = "\ufeff"

// LockSignature is one line: one signature of one approval.
type LockSignature struct {
	Server string          `json:"server"`
	Kind   string          `json:"kind"`
	Tool   string          `json:"tool,omitempty"`
	Digest rugwatch.Digest `json:"digest"`
	KeyID  string          `json:"key_id"`
	// First marks the approval's first signature, the one its store
	// record holds as the approval (later ones are its cosignatures):
	// whether a cosignature counts depends on the seq the first is bound
	// to (CheckLock). lock export marks it; lock sign never adds one.
	First    bool            `json:"first,omitempty"`
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
	// Identical lines once; one of them marked first marks the one kept.
	kept := sigs[:0]
	for _, s := range sigs {
		if n := len(kept); n > 0 && compareLock(kept[n-1], s) == 0 {
			kept[n-1].First = kept[n-1].First || s.First
			continue
		}
		kept = append(kept, s)
	}
	sigs = kept
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

// ReadLockFile reads the lock file at path, refusing one larger than a
// lock file may be before reading any of it: a file of gigabytes costs a
// stat, not its size in memory.
func ReadLockFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() > maxLockBytes {
		return nil, fmt.Errorf("%s: lock file of %d bytes, more than %d", path, fi.Size(), maxLockBytes)
	}
	// It may grow between the stat and the read: read no more than the
	// bound allows, and one byte to tell.
	b, err := io.ReadAll(io.LimitReader(f, maxLockBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if len(b) > maxLockBytes {
		return nil, fmt.Errorf("%s: lock file of more than %d bytes", path, maxLockBytes)
	}
	return b, nil
}

// ParseLock reads a lock file strictly: the header first, then one JSON
// object per line with exactly the fields of LockSignature, no member
// twice (nor twice in another case), a valid digest, no line longer than
// a signature can be. Blank lines are allowed; a byte-order mark is not
// (it is refused with what to do, not skipped: the file is written by
// rugwatch, so one means an editor rewrote it).
func ParseLock(b []byte) (Lock, error) {
	if len(b) > maxLockBytes {
		return Lock{}, fmt.Errorf("lock file of %d bytes, more than %d", len(b), maxLockBytes)
	}
	if bytes.HasPrefix(b, []byte(utf8BOM)) {
		return Lock{}, errors.New("line 1: the file starts with a byte-order mark; save it without one")
	}
	var l Lock
	header := false
	for n := 1; len(b) > 0; n++ {
		raw := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			raw, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		if len(raw) > maxLockLine {
			return Lock{}, fmt.Errorf("line %d: %d bytes, more than the %d a signature line may hold", n, len(raw), maxLockLine)
		}
		line := bytes.TrimSpace(raw)
		if len(line) == 0 {
			continue
		}
		if !header {
			var h struct {
				Version *int `json:"rugwatch_lock"`
			}
			if err := strictDecode(line, &h); err != nil || h.Version == nil {
				return Lock{}, fmt.Errorf("line %d: not a rugwatch lock file (the first line must be %s)", n, LockHeader)
			}
			if *h.Version != 1 {
				return Lock{}, fmt.Errorf("line %d: lock file version %d; this rugwatch reads version 1", n, *h.Version)
			}
			header = true
			continue
		}
		var s LockSignature
		if err := strictDecode(line, &s); err != nil {
			return Lock{}, fmt.Errorf("line %d: %w", n, err)
		}
		if s.Server == "" || s.Kind == "" || s.KeyID == "" || len(s.Envelope) == 0 {
			return Lock{}, fmt.Errorf("line %d: a signature needs server, kind, digest, key_id and envelope", n)
		}
		if !s.Digest.Valid() {
			// Its text is not shown: it is neither a digest nor known to
			// be printable.
			return Lock{}, fmt.Errorf("line %d: digest is not of the form sha256:<64 lowercase hex>", n)
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
	if err := CheckMembers(raw, Limits{MaxBytes: maxLockLine, MaxStringBytes: maxLockLine}); err != nil {
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
// server, kind, tool and digest of its line, and is bound no earlier than
// the approval's first signature (the rule the daemon counts
// cosignatures by, monitor's cosigners). Approvals come in the file's
// order.
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
//
// Which signatures count is what the daemon counts for a store record of
// them: the first signature, and each other one bound to a seq no earlier
// than the first's (a review completed by a quorum moves the newest
// transition, so a signature given after it is bound later, and counts).
// The line marked first is the first. A file with no line marked (written
// by hand, or by a rugwatch before the mark) takes the signature bound
// latest as the first, so only signatures of that one seq count: the real
// first is bound no later than that, so this counts a subset of what the
// daemon would, never more. Taking the earliest instead would count a
// signature of an older state the daemon leaves out.
func checkLockApproval(sigs []LockSignature, v *Verifier, p *Policy) LockApproval {
	a := LockApproval{Server: sigs[0].Server, Kind: sigs[0].Kind, Tool: sigs[0].Tool, Digest: sigs[0].Digest}
	type counted struct {
		key   string
		seq   uint64
		at    string
		first bool
	}
	var good []counted
	var firsts []string // keys of the lines marked first
	badFirst := false
	for _, s := range sigs {
		at := fmt.Sprintf("line %d: signature by %s", s.Line, s.KeyID)
		if s.First && !slices.Contains(firsts, s.KeyID) {
			firsts = append(firsts, s.KeyID)
		}
		if s.Digest != a.Digest {
			a.Problems = append(a.Problems, fmt.Sprintf("%s approves %s, another line approves %s: one approval, one digest", at, s.Digest, a.Digest))
			badFirst = badFirst || s.First
			continue
		}
		st, err := v.Verify(s.Envelope)
		if err != nil {
			a.Problems = append(a.Problems, fmt.Sprintf("%s does not verify: %v", at, err))
			badFirst = badFirst || s.First
			continue
		}
		if st.KeyID != s.KeyID {
			a.Problems = append(a.Problems, fmt.Sprintf("%s was made by key %s", at, st.KeyID))
			badFirst = badFirst || s.First
			continue
		}
		if !st.Names(s.Kind, s.Server, s.Tool, s.Digest) {
			a.Problems = append(a.Problems, fmt.Sprintf("%s signs %s, not what its line says", at, st.Subject()))
			badFirst = badFirst || s.First
			continue
		}
		seq, ok := st.Bound()
		if !ok {
			a.Problems = append(a.Problems, fmt.Sprintf("%s names no state it resolves (signed by an older rugwatch); sign it again", at))
			badFirst = badFirst || s.First
			continue
		}
		good = append(good, counted{st.KeyID, seq, at, s.First})
	}
	var from uint64 // the first's seq: signatures bound earlier count none
	switch {
	case len(firsts) > 1:
		a.Problems = append(a.Problems, fmt.Sprintf("signatures by %s are each marked first: an approval has one first signature", strings.Join(firsts, ", ")))
		good = nil
	case badFirst:
		// The daemon counts no cosignature of a record whose first
		// signature fails: neither does the file.
		a.Problems = append(a.Problems, "the signature marked first does not hold, so none of this approval's signatures count")
		good = nil
	case len(firsts) == 1:
		for _, g := range good {
			if g.first {
				from = g.seq
			}
		}
	default:
		for _, g := range good {
			from = max(from, g.seq)
		}
	}
	a.Signers = []string{}
	for _, g := range good {
		if g.seq < from {
			a.Problems = append(a.Problems, fmt.Sprintf("%s is bound to seq %d, before the approval's first signature (seq %d): it signed an older state", g.at, g.seq, from))
			continue
		}
		a.Resolves = max(a.Resolves, g.seq)
		if !slices.Contains(a.Signers, g.key) { // a line repeated names its signer once
			a.Signers = append(a.Signers, g.key)
		}
	}
	a.Tally = p.Tally(a.Server, a.Signers)
	if !a.Tally.Met() {
		a.Problems = append(a.Problems, "quorum not met: signatures "+a.Tally.String())
	}
	return a
}
