package signatures

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

// lockSig signs the tool statement of testDefinition by s, bound to seq.
func lockSig(t *testing.T, s *Signer, seq uint64) LockSignature {
	t.Helper()
	d, canon, err := Digest([]byte(testDefinition), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	env, err := s.SignApproval(ToolStatement("demo", "add", d, canon, Review{Seq: seq, ApprovedAt: time.Unix(1, 0)}))
	if err != nil {
		t.Fatal(err)
	}
	return LockSignature{Server: "demo", Kind: KindTool, Tool: "add", Digest: d, KeyID: s.KeyID(), Envelope: env}
}

// A lock file is one text for one set of signatures, whatever order they
// came in, and reads back strictly.
func TestLockEncodeIsDeterministicAndParsesStrictly(t *testing.T) {
	a, b := newSigner(t), newSigner(t)
	sa, sb := lockSig(t, a, 7), lockSig(t, b, 7)
	one, err := Lock{Signatures: []LockSignature{sa, sb, sa}}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	two, err := Lock{Signatures: []LockSignature{sb, sa}}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(one, two) || strings.Count(string(one), "\n") != 3 {
		t.Fatalf("encodings differ or keep a duplicate:\n%s\n---\n%s", one, two)
	}
	l, err := ParseLock(one)
	if err != nil || len(l.Signatures) != 2 || l.Signatures[0].Line != 2 {
		t.Fatalf("ParseLock: %v %+v", err, l)
	}
	lines := strings.SplitN(string(one), "\n", 2)
	for name, bad := range map[string]string{
		"no header":        lines[1],
		"unknown field":    lines[0] + "\n" + strings.Replace(lines[1], `{"server"`, `{"extra":1,"server"`, 1),
		"case duplicate":   lines[0] + "\n" + strings.Replace(lines[1], `{"server":"demo"`, `{"server":"demo","SERVER":"evil"`, 1),
		"two values":       lines[0] + "\n" + strings.Replace(lines[1], "}\n", "} {}\n", 1),
		"newer version":    `{"rugwatch_lock":2}` + "\n",
		"missing envelope": lines[0] + "\n" + `{"server":"demo","kind":"tool","tool":"add","digest":"sha256:00","key_id":"k"}` + "\n",
	} {
		if _, err := ParseLock([]byte(bad)); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
}

// Signatures of one approval count only together with the state they are
// bound to: one bound to an older seq than the others is a problem and
// counts none; a quorum short of its signatures is a problem.
func TestLockCheckCountsOneReview(t *testing.T) {
	a, b := newSigner(t), newSigner(t)
	v := NewVerifier([]PublicKey{a.PublicKey(), b.PublicKey()})
	p := &Policy{Keys: map[string]KeyInfo{a.KeyID(): {Name: "alice"}, b.KeyID(): {Name: "bob"}}, Default: Quorum{N: 2}}
	ok := CheckLock(Lock{Signatures: []LockSignature{lockSig(t, a, 7), lockSig(t, b, 7)}}, v, p)
	if len(ok) != 1 || len(ok[0].Problems) != 0 || !ok[0].Tally.Met() || ok[0].Resolves != 7 {
		t.Fatalf("two signatures of one review: %+v", ok)
	}
	stale := CheckLock(Lock{Signatures: []LockSignature{lockSig(t, a, 3), lockSig(t, b, 7)}}, v, p)
	if len(stale[0].Signers) != 1 || len(stale[0].Problems) != 2 || !strings.Contains(stale[0].Problems[0], "bound to seq 3") {
		t.Fatalf("a signature of an older state: %+v", stale)
	}
}

// CheckLock counts what the daemon counts of a store record: the first
// signature and every other one bound no earlier than it. A signature
// given after a review completed (bound to the newer transition the
// completion made) counts; one bound before the first counts none; a
// file with no first marked counts only the signatures bound latest,
// never more than the daemon would.
func TestLockCheckCountsFromTheFirstSignature(t *testing.T) {
	a, b, c := newSigner(t), newSigner(t), newSigner(t)
	v := NewVerifier([]PublicKey{a.PublicKey(), b.PublicKey(), c.PublicKey()})
	p := &Policy{Keys: map[string]KeyInfo{a.KeyID(): {Name: "alice"}, b.KeyID(): {Name: "bob"}, c.KeyID(): {Name: "carol"}},
		Default: Quorum{N: 3}}
	first := func(s LockSignature) LockSignature { s.First = true; return s }
	check := func(sigs ...LockSignature) LockApproval {
		t.Helper()
		// Through the file, as lock verify reads it.
		b, err := Lock{Signatures: sigs}.Encode()
		if err != nil {
			t.Fatal(err)
		}
		l, err := ParseLock(b)
		if err != nil {
			t.Fatal(err)
		}
		got := CheckLock(l, v, p)
		if len(got) != 1 {
			t.Fatalf("%d approvals, want 1", len(got))
		}
		return got[0]
	}

	later := check(first(lockSig(t, a, 6)), lockSig(t, b, 6), lockSig(t, c, 15))
	if len(later.Problems) != 0 || !later.Tally.Met() || len(later.Signers) != 3 || later.Resolves != 15 {
		t.Fatalf("a cosignature bound after the first: %+v", later)
	}
	before := check(lockSig(t, a, 3), first(lockSig(t, b, 6)), lockSig(t, c, 6))
	if len(before.Signers) != 2 || len(before.Problems) != 2 || !strings.Contains(before.Problems[0], "bound to seq 3, before the approval's first signature (seq 6)") {
		t.Fatalf("a signature bound before the first: %+v", before)
	}
	unmarked := check(lockSig(t, a, 6), lockSig(t, b, 6), lockSig(t, c, 15))
	if len(unmarked.Signers) != 1 || unmarked.Tally.Met() {
		t.Fatalf("no first marked: %+v, want only the signature bound latest to count", unmarked)
	}
	two := check(first(lockSig(t, a, 6)), first(lockSig(t, b, 6)), lockSig(t, c, 6))
	if len(two.Signers) != 0 || !strings.Contains(strings.Join(two.Problems, "\n"), "each marked first") {
		t.Fatalf("two firsts: %+v", two)
	}
	broken := first(lockSig(t, a, 6))
	broken.Envelope = bytes.Replace(broken.Envelope, []byte(`"sig":"`), []byte(`"sig":"AAAA`), 1)
	bad := check(broken, lockSig(t, b, 6), lockSig(t, c, 6))
	if len(bad.Signers) != 0 || !strings.Contains(strings.Join(bad.Problems, "\n"), "the signature marked first does not hold") {
		t.Fatalf("a first that does not verify: %+v", bad)
	}
}

// The export marks the first line; a co-signature added beside it is a
// line of its own, unmarked: one line in a diff.
func TestLockEncodeKeepsTheFirstMark(t *testing.T) {
	a, b := newSigner(t), newSigner(t)
	sa, sb := lockSig(t, a, 7), lockSig(t, b, 7)
	sa.First = true
	one, err := Lock{Signatures: []LockSignature{sa}}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	unmarked := sa
	unmarked.First = false
	two, err := Lock{Signatures: []LockSignature{unmarked, sa, sb}}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	firstLine := strings.Split(string(one), "\n")[1]
	if !strings.Contains(firstLine, `"first":true`) || strings.Count(string(two), `"first":true`) != 1 ||
		strings.Count(string(two), "\n") != 3 || !strings.Contains(string(two), firstLine+"\n") {
		t.Fatalf("the first mark:\n%s\n---\n%s", one, two)
	}
}

// A lock file is bounded before it is read and line by line as it is
// parsed; each refusal says where. A byte-order mark is refused with what
// to do; a line repeated names its signer once.
func TestLockBoundsAndOddFiles(t *testing.T) {
	a := newSigner(t)
	v := NewVerifier([]PublicKey{a.PublicKey()})
	p := &Policy{Keys: map[string]KeyInfo{a.KeyID(): {Name: "alice"}}, Default: Quorum{N: 1}}
	sa := lockSig(t, a, 7)
	sa.First = true
	good, err := Lock{Signatures: []LockSignature{sa}}.Encode()
	if err != nil {
		t.Fatal(err)
	}

	// A file far larger than a lock file may be is refused on its size:
	// a sparse gigabyte costs a stat, not a gigabyte.
	huge := filepath.Join(t.TempDir(), "huge.lock.json")
	if err := os.WriteFile(huge, good, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(huge, 1<<30); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err = ReadLockFile(huge)
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), "more than") {
		t.Fatalf("a 1 GiB lock file: %v", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
		t.Fatalf("refusing a 1 GiB lock file allocated %d bytes", grew)
	}
	if b, err := ReadLockFile(filepath.Join(filepath.Dir(huge), "absent")); err == nil || b != nil {
		t.Fatal("an absent file read")
	}
	if _, err := ParseLock(bytes.Repeat([]byte("\n"), maxLockBytes+1)); err == nil {
		t.Fatal("a file over the bound parsed")
	}

	lines := strings.SplitN(string(good), "\n", 2)
	long := lines[0] + "\n\n" + strings.Replace(lines[1], `"envelope":{`, `"envelope":{"x":"`+strings.Repeat("a", maxLockLine)+`",`, 1)
	if _, err := ParseLock([]byte(long)); err == nil || !strings.HasPrefix(err.Error(), "line 3: ") || !strings.Contains(err.Error(), "a signature line may hold") {
		t.Fatalf("a line over the bound: %v", err)
	}

	if _, err := ParseLock(append([]byte("\ufeff"), good...)); err == nil || !strings.Contains(err.Error(), "starts with a byte-order mark; save it without one") {
		t.Fatalf("a byte-order mark: %v", err)
	}

	bad := lines[0] + "\n" + regexp.MustCompile(`"digest":"[^"]*"`).ReplaceAllString(lines[1], `"digest":"sha256:ABC\u001b[2J"`)
	if _, err := ParseLock([]byte(bad)); err == nil || !strings.Contains(err.Error(), "line 2: digest is not") || strings.Contains(err.Error(), "\x1b") {
		t.Fatalf("a digest that is not one: %v", err)
	}

	twice, err := ParseLock([]byte(string(good) + lines[1]))
	if err != nil || len(twice.Signatures) != 2 {
		t.Fatalf("a repeated line: %v %+v", err, twice)
	}
	got := CheckLock(twice, v, p)
	if len(got) != 1 || len(got[0].Signers) != 1 || len(got[0].Problems) != 0 {
		t.Fatalf("a repeated line: %+v, want alice once", got)
	}
}
