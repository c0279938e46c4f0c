package signatures

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/dsse"
	"github.com/sigstore/sigstore/pkg/signature/options"

	"github.com/rugwatch/rugwatch"
)

const testDefinition = `{
  "name": "add",
  "description": "Adds two numbers.",
  "inputSchema": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]}
}`

func newSigner(t testing.TB) *Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func testStatement(t testing.TB) Statement {
	t.Helper()
	d, _, err := Digest([]byte(testDefinition), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return Statement{
		Kind:             KindTool,
		Server:           "everything",
		Tool:             "add",
		Digest:           d,
		Definition:       json.RawMessage(testDefinition),
		ApprovedAt:       time.Date(2025, 11, 26, 10, 30, 0, 123456789, time.FixedZone("CET", 3600)),
		Note:             "reviewed <by> alice & bob",
		AcceptedFindings: []string{"unicode-tag"},
	}
}

// signRaw signs arbitrary payload bytes with s's key, bypassing
// SignApproval's checks, to build envelopes an attacker holding a trusted
// key (or a buggy signer) could produce.
func signRaw(t testing.TB, s *Signer, payloadType string, payload []byte) []byte {
	t.Helper()
	sig, err := s.s.SignMessage(bytes.NewReader(pae(payloadType, payload)))
	if err != nil {
		t.Fatal(err)
	}
	env, err := json.Marshal(envelope{
		PayloadType: payloadType,
		Payload:     b64.EncodeToString(payload),
		Signatures:  []envSignature{{KeyID: s.KeyID(), Sig: b64.EncodeToString(sig)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func TestSignVerifyRoundTrip(t *testing.T) {
	t.Parallel()
	// A key through the real file path, encrypted.
	dir := t.TempDir()
	if _, err := GenerateKeyPair(dir, []byte("pw")); err != nil {
		t.Fatal(err)
	}
	s, err := LoadPrivateKey(filepath.Join(dir, PrivateKeyFile), func() ([]byte, error) { return []byte("pw"), nil })
	if err != nil {
		t.Fatal(err)
	}
	pub, err := LoadPublicKey(filepath.Join(dir, PublicKeyFile))
	if err != nil {
		t.Fatal(err)
	}

	st := testStatement(t)
	st.KeyID = "sha256:someone-else" // SignApproval must overwrite it
	env, err := s.SignApproval(st)
	if err != nil {
		t.Fatalf("SignApproval: %v", err)
	}
	v := NewVerifier([]PublicKey{newSigner(t).PublicKey(), pub})
	if v.Trusted() != 2 {
		t.Fatalf("verifier trusts %d keys", v.Trusted())
	}
	got, err := v.Verify(env)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	canon, _ := Canonical([]byte(testDefinition), Limits{})
	if got.KeyID != s.KeyID() || got.Kind != st.Kind || got.Server != st.Server || got.Tool != st.Tool ||
		got.Digest != st.Digest || !got.ApprovedAt.Equal(st.ApprovedAt) || got.Note != st.Note ||
		len(got.AcceptedFindings) != 1 || got.AcceptedFindings[0] != "unicode-tag" {
		t.Errorf("statement changed in transit:\n got %+v\nwant %+v", got, st)
	}
	if !bytes.Equal(got.Definition, canon) {
		t.Errorf("definition %s, want canonical %s", got.Definition, canon)
	}

	// The envelope is standard DSSE: sigstore's own DSSE verifier accepts it.
	var e envelope
	if err := json.Unmarshal(env, &e); err != nil {
		t.Fatal(err)
	}
	if e.PayloadType != PayloadType || len(e.Signatures) != 1 || e.Signatures[0].KeyID != pub.ID {
		t.Errorf("envelope %+v", e)
	}
	sv, err := signature.LoadVerifier(pub.Key, 0)
	if err != nil {
		t.Fatal(err)
	}
	// sigstore's wrapper (go-securesystemslib underneath) names keys by
	// their SSH SHA256 fingerprint and skips a signature whose keyid
	// differs, so it is handed the envelope with the (optional, unsigned)
	// keyid hint removed.
	e.Signatures[0].KeyID = ""
	anon, _ := json.Marshal(e)
	var decoded []byte
	dv := dsse.WrapVerifier(sv, dsse.WithExpectedPayloadType(PayloadType), dsse.WithDecodedPayload(&decoded))
	if err := dv.VerifySignature(bytes.NewReader(anon), nil, options.WithContext(t.Context())); err != nil {
		t.Fatalf("sigstore dsse verifier rejects our envelope: %v", err)
	}
	if !bytes.Contains(decoded, []byte(`"kind":"tool"`)) {
		t.Errorf("decoded payload %s", decoded)
	}
}

func TestInstructionsStatement(t *testing.T) {
	s := newSigner(t)
	def := json.RawMessage(`"Use these tools carefully."`)
	d, _, err := Digest(def, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	env, err := s.SignApproval(Statement{Kind: KindInstructions, Server: "srv", Digest: d, Definition: def, ApprovedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	got, err := NewVerifier([]PublicKey{s.PublicKey()}).Verify(env)
	if err != nil || got.Kind != KindInstructions || got.Tool != "" {
		t.Fatalf("Verify = %+v, %v", got, err)
	}
}

func TestSignApprovalRefuses(t *testing.T) {
	s := newSigner(t)
	other, _, _ := Digest([]byte(`{"name":"add"}`), Limits{})
	tests := []struct {
		name   string
		mutate func(*Statement)
		want   string
	}{
		{"digest mismatch", func(st *Statement) { st.Digest = other }, "does not match"},
		{"digest malformed", func(st *Statement) { st.Digest = "sha256:abc" }, "sha256:<64 hex>"},
		{"definition changed", func(st *Statement) { st.Definition = json.RawMessage(`{"name":"add2"}`) }, "does not match"},
		{"definition hostile", func(st *Statement) { st.Definition = json.RawMessage(`{"a":1,"a":1}`) }, ReasonDuplicateKey},
		{"definition empty", func(st *Statement) { st.Definition = nil }, "definition is empty"},
		{"unknown kind", func(st *Statement) { st.Kind = "server" }, "unknown kind"},
		{"tool without name", func(st *Statement) { st.Tool = "" }, "tool name"},
		{"instructions with tool", func(st *Statement) { st.Kind = KindInstructions }, "no tool name"},
		{"no server", func(st *Statement) { st.Server = "" }, "server"},
		{"zero time", func(st *Statement) { st.ApprovedAt = time.Time{} }, "approved_at"},
		{"invalid utf8 note", func(st *Statement) { st.Note = "\xff" }, "UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := testStatement(t)
			tt.mutate(&st)
			env, err := s.SignApproval(st)
			if err == nil {
				t.Fatalf("signed: %s", env)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

// tamperable returns the byte ranges of the payload and sig strings inside
// the envelope JSON.
func tamperable(t *testing.T, env []byte) map[string][2]int {
	t.Helper()
	var e envelope
	if err := json.Unmarshal(env, &e); err != nil {
		t.Fatal(err)
	}
	out := map[string][2]int{}
	for name, val := range map[string]string{"payload": e.Payload, "sig": e.Signatures[0].Sig} {
		i := bytes.Index(env, []byte(`"`+val+`"`))
		if i < 0 {
			t.Fatalf("%s not found verbatim", name)
		}
		out[name] = [2]int{i + 1, i + 1 + len(val)}
	}
	return out
}

func TestTamperingFails(t *testing.T) {
	s := newSigner(t)
	v := NewVerifier([]PublicKey{s.PublicKey()})
	env, err := s.SignApproval(testStatement(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(env); err != nil {
		t.Fatal(err)
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for field, r := range tamperable(t, env) {
		tried := 0
		for i := r[0]; i < r[1]; i++ {
			if env[i] == '=' {
				continue // padding; replacing it is covered below
			}
			// Two replacements per position: a neighbour in the alphabet
			// (often only the low bits differ) and a far one.
			k := strings.IndexByte(alphabet, env[i])
			for _, repl := range []byte{alphabet[(k+1)%64], alphabet[(k+32)%64]} {
				mod := bytes.Clone(env)
				mod[i] = repl
				if _, err := v.Verify(mod); err == nil {
					t.Fatalf("%s byte %d changed %q->%q still verifies", field, i-r[0], env[i], repl)
				}
				tried++
			}
		}
		if tried < 80 {
			t.Fatalf("%s: only %d tamperings tried", field, tried)
		}
	}

	// Tampering the decoded payload and re-encoding it properly is caught
	// by the signature, not by base64.
	var e envelope
	_ = json.Unmarshal(env, &e)
	payload, _ := b64.DecodeString(e.Payload)
	for _, edit := range []struct{ from, to string }{
		{`"tool":"add"`, `"tool":"sub"`},
		{`"server":"everything"`, `"server":"everythinG"`},
		{`"note":"reviewed`, `"note":"Reviewed`},
	} {
		mod := bytes.Replace(payload, []byte(edit.from), []byte(edit.to), 1)
		if bytes.Equal(mod, payload) {
			t.Fatalf("edit %q not applied", edit.from)
		}
		e2 := e
		e2.Payload = b64.EncodeToString(mod)
		raw, _ := json.Marshal(e2)
		if _, err := v.Verify(raw); !errors.Is(err, ErrBadSignature) {
			t.Errorf("edit %q: error %v, want ErrBadSignature", edit.from, err)
		}
	}
}

func TestVerifyFailures(t *testing.T) {
	s := newSigner(t)
	stranger := newSigner(t)
	v := NewVerifier([]PublicKey{s.PublicKey()})
	good, err := s.SignApproval(testStatement(t))
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := stranger.SignApproval(testStatement(t))
	if err != nil {
		t.Fatal(err)
	}

	var e envelope
	_ = json.Unmarshal(good, &e)
	var fe envelope
	_ = json.Unmarshal(foreign, &fe)
	rewrap := func(f func(*envelope)) []byte {
		c := e
		c.Signatures = append([]envSignature(nil), e.Signatures...)
		f(&c)
		b, _ := json.Marshal(c)
		return b
	}
	stmt := func(f func(map[string]any)) []byte {
		st := testStatement(t)
		st.KeyID = s.KeyID()
		canon, _ := Canonical(st.Definition, Limits{})
		st.Definition = canon
		raw, _ := json.Marshal(st)
		var m map[string]any
		_ = json.Unmarshal(raw, &m)
		f(m)
		raw, _ = json.Marshal(m)
		c, err := Canonical(raw, Limits{})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	otherDigest, _, _ := Digest([]byte(`{"name":"add","description":"Adds two numbers. Also exfiltrate."}`), Limits{})

	tests := []struct {
		name string
		env  []byte
		want error
	}{
		{"untrusted key", foreign, ErrUntrustedKey},
		{"no trusted keys", nil, ErrUntrustedKey}, // verified against an empty verifier below
		{"no signatures", rewrap(func(c *envelope) { c.Signatures = nil }), ErrUntrustedKey},
		{"key id relabelled to trusted", func() []byte {
			c := fe
			c.Signatures = []envSignature{{KeyID: s.KeyID(), Sig: fe.Signatures[0].Sig}}
			b, _ := json.Marshal(c)
			return b
		}(), ErrBadSignature},
		{"signature swapped", rewrap(func(c *envelope) { c.Signatures[0].Sig = fe.Signatures[0].Sig }), ErrBadSignature},
		{"signature empty", rewrap(func(c *envelope) { c.Signatures[0].Sig = "" }), ErrBadSignature},
		{"signature not base64", rewrap(func(c *envelope) { c.Signatures[0].Sig = "!!!!" }), ErrBadSignature},
		{"payload type changed", rewrap(func(c *envelope) { c.PayloadType = "application/vnd.in-toto+json" }), ErrBadEnvelope},
		{"signed with other payload type", signRaw(t, s, "application/json", stmt(func(map[string]any) {})), ErrBadEnvelope},
		{"payload not base64", rewrap(func(c *envelope) { c.Payload = "%%%" }), ErrBadEnvelope},
		{"not json", []byte("hello"), ErrBadEnvelope},
		{"empty", []byte{}, ErrBadEnvelope},
		{"duplicate envelope key", bytes.Replace(good, []byte(`{"payloadType"`), []byte(`{"payload":"e30=","payloadType"`), 1), ErrBadEnvelope},
		{"digest does not match definition", signRaw(t, s, PayloadType, stmt(func(m map[string]any) { m["digest"] = string(otherDigest) })), ErrBadStatement},
		{"definition does not match digest", signRaw(t, s, PayloadType, stmt(func(m map[string]any) {
			m["definition"] = map[string]any{"name": "add", "description": "Adds two numbers. Also exfiltrate."}
		})), ErrBadStatement},
		{"statement names another key", signRaw(t, s, PayloadType, stmt(func(m map[string]any) { m["key_id"] = stranger.KeyID() })), ErrBadStatement},
		{"statement unknown field", signRaw(t, s, PayloadType, stmt(func(m map[string]any) { m["admin"] = true })), ErrBadStatement},
		{"statement bad kind", signRaw(t, s, PayloadType, stmt(func(m map[string]any) { m["kind"] = "everything" })), ErrBadStatement},
		{"payload not canonical", signRaw(t, s, PayloadType, append([]byte(" "), stmt(func(map[string]any) {})...)), ErrBadStatement},
		{"payload duplicate key", signRaw(t, s, PayloadType, bytes.Replace(stmt(func(map[string]any) {}), []byte(`{"accepted`), []byte(`{"kind":"tool","accepted`), 1)), ErrBadStatement},
		{"payload not json", signRaw(t, s, PayloadType, []byte("approved!")), ErrBadStatement},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ver, env := v, tt.env
			if env == nil {
				ver, env = NewVerifier(nil), good
			}
			st, err := ver.Verify(env)
			if err == nil {
				t.Fatalf("verified: %+v", st)
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("error %v, want %v", err, tt.want)
			}
			for _, other := range []error{ErrUntrustedKey, ErrBadSignature, ErrBadEnvelope, ErrBadStatement} {
				if other != tt.want && errors.Is(err, other) {
					t.Errorf("error %v is also %v", err, other)
				}
			}
		})
	}
}

func TestVerifyMultipleSignatures(t *testing.T) {
	s, stranger := newSigner(t), newSigner(t)
	v := NewVerifier([]PublicKey{s.PublicKey()})
	good, _ := s.SignApproval(testStatement(t))
	var e envelope
	_ = json.Unmarshal(good, &e)

	// An untrusted signature first, then the trusted one.
	e.Signatures = append([]envSignature{{KeyID: stranger.KeyID(), Sig: e.Signatures[0].Sig}}, e.Signatures...)
	env, _ := json.Marshal(e)
	st, err := v.Verify(env)
	if err != nil || st.KeyID != s.KeyID() {
		t.Fatalf("Verify = %v, %v", st.KeyID, err)
	}
}

func TestNewVerifierDropsMislabelledKeys(t *testing.T) {
	s, other := newSigner(t), newSigner(t)
	// A key whose ID claims to be s's but whose material is another's.
	v := NewVerifier([]PublicKey{{ID: s.KeyID(), Key: other.PublicKey().Key}, {ID: "x", Key: "not a key"}})
	if v.Trusted() != 0 {
		t.Fatalf("verifier kept %d mislabelled keys", v.Trusted())
	}
	env, _ := s.SignApproval(testStatement(t))
	if _, err := v.Verify(env); !errors.Is(err, ErrUntrustedKey) {
		t.Errorf("error %v, want ErrUntrustedKey", err)
	}
}

func TestVerifyConcurrent(t *testing.T) {
	s := newSigner(t)
	v := NewVerifier([]PublicKey{s.PublicKey()})
	env, err := s.SignApproval(testStatement(t))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			for range 20 {
				if _, err := v.Verify(env); err != nil {
					errs <- err
					return
				}
				if _, err := s.SignApproval(testStatement(t)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestStatementDigestType(t *testing.T) {
	// Guard against the root type changing shape under us.
	var d rugwatch.Digest = DigestOf([]byte("{}"))
	if !d.Valid() {
		t.Fatal(d)
	}
}

// The bound seq is signed: 0 (a tool never seen) and a real seq survive
// the round trip and stay apart from an unbound statement, and changing it
// in the payload breaks the signature.
func TestResolvesIsSignedAndKeepsZeroApart(t *testing.T) {
	s := newSigner(t)
	v := NewVerifier([]PublicKey{s.PublicKey()})
	for _, c := range []struct {
		resolves *uint64
		want     string
	}{{nil, ""}, {ResolvesSeq(0), `"resolves":0`}, {ResolvesSeq(42), `"resolves":42`}} {
		st := testStatement(t)
		st.Resolves = c.resolves
		env, err := s.SignApproval(st)
		if err != nil {
			t.Fatal(err)
		}
		got, err := v.Verify(env)
		if err != nil {
			t.Fatal(err)
		}
		seq, bound := got.Bound()
		wantSeq, wantBound := st.Bound()
		if seq != wantSeq || bound != wantBound {
			t.Errorf("resolves %v: verified Bound() = %d, %v", c.resolves, seq, bound)
		}
		var e envelope
		_ = json.Unmarshal(env, &e)
		payload, _ := b64.DecodeString(e.Payload)
		if c.want == "" {
			if bytes.Contains(payload, []byte("resolves")) {
				t.Errorf("unbound statement carries resolves: %s", payload)
			}
			continue
		}
		if !bytes.Contains(payload, []byte(c.want)) {
			t.Fatalf("payload %s lacks %s", payload, c.want)
		}
		// A replayer who rewrites the bound to today's seq breaks the
		// signature.
		forged := bytes.Replace(payload, []byte(c.want), []byte(`"resolves":99`), 1)
		e.Payload = b64.EncodeToString(forged)
		tampered, _ := json.Marshal(e)
		if _, err := v.Verify(tampered); !errors.Is(err, ErrBadSignature) {
			t.Errorf("rewritten resolves: Verify = %v, want ErrBadSignature", err)
		}
	}
	st := testStatement(t)
	st.Resolves = ResolvesSeq(1<<53 + 1)
	if _, err := s.SignApproval(st); err == nil || !strings.Contains(err.Error(), "resolves") {
		t.Errorf("resolves beyond 2^53 signed: %v", err)
	}
}
