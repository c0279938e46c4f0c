package signatures

import (
	"bytes"
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
