package signatures

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/rugwatch/rugwatch"
)

// PayloadType is the DSSE payload type of a rugwatch approval.
const PayloadType = "application/vnd.rugwatch.approval.v1+json"

// Statement kinds.
const (
	KindTool         = "tool"
	KindInstructions = "instructions"
	// KindEgress approves the egress destinations a server may use
	// (behaviour pinning): its definition is EgressDefinition's.
	KindEgress = "egress"
	// KindLaunch approves what runs for a server (its launch identity)
	// and who answers for it (its remote identity), after either drifted:
	// its definition is LaunchDefinition's.
	KindLaunch = "launch"
)

// Verification failures callers tell apart with errors.Is.
var (
	// ErrUntrustedKey: no signature on the envelope is by a trusted key id.
	ErrUntrustedKey = errors.New("approval not signed by a trusted key")
	// ErrBadSignature: a trusted key id signed, but the signature does not
	// verify over the envelope's payload.
	ErrBadSignature = errors.New("approval signature invalid")
	// ErrBadEnvelope: the envelope is not a DSSE envelope of PayloadType.
	ErrBadEnvelope = errors.New("malformed approval envelope")
	// ErrBadStatement: the signed statement is inconsistent (digest does not
	// match the definition, key id is not the signer's, fields missing).
	ErrBadStatement = errors.New("invalid approval statement")
)

// maxEnvelope bounds an envelope Verify will parse: the definition it
// carries was itself bounded by Limits.MaxBytes, plus base64 overhead.
const maxEnvelope = DefaultMaxBytes*4/3 + 64<<10

// Statement is what an approver signs: this server's tool (or
// instructions) with this canonical definition and digest is approved.
type Statement struct {
	Kind             string          `json:"kind"` // "tool", "instructions" or "egress"
	Server           string          `json:"server"`
	Tool             string          `json:"tool,omitempty"`
	Digest           rugwatch.Digest `json:"digest"`
	Definition       json.RawMessage `json:"definition"` // canonical JSON of what was approved
	KeyID            string          `json:"key_id"`
	ApprovedAt       time.Time       `json:"approved_at"`
	Note             string          `json:"note,omitempty"`
	AcceptedFindings []string        `json:"accepted_findings,omitempty"`
	// ReturnsSecrets (kind tool) says the approver knows the tool returns
	// secrets by design (a vault, a password manager): its results raise
	// no secret-in-result, while what they carry is still tracked for
	// exfiltration-chain. Signed, so the store cannot grant it.
	ReturnsSecrets bool `json:"returns_secrets,omitempty"`
	// Resolves binds the approval to the state it was signed for: the seq
	// of the newest event that moved this tool (or the instructions) when
	// the approver reviewed it, 0 for one never seen. The daemon accepts it
	// only while that is still the newest such event, and never lets it
	// approve a tool whose latest drift or revocation is newer, so an
	// envelope from history, or sent again, approves nothing. Nil in
	// envelopes signed before approvals were bound (see Bound).
	Resolves *uint64 `json:"resolves,omitempty"`
}

// maxResolves keeps a bound seq exact in RFC 8785 canonical JSON, whose
// numbers are IEEE doubles.
const maxResolves = 1 << 53

// Bound reports the seq the statement is bound to; false for a statement
// signed before approvals were bound.
func (st *Statement) Bound() (uint64, bool) {
	if st.Resolves == nil {
		return 0, false
	}
	return *st.Resolves, true
}

// ResolvesSeq is a helper for filling Statement.Resolves.
func ResolvesSeq(seq uint64) *uint64 { return &seq }

// check enforces the statement's own consistency, the same on both sides.
func (st *Statement) check() error {
	switch st.Kind {
	case KindTool:
		if st.Tool == "" {
			return errors.New("kind tool needs a tool name")
		}
	case KindInstructions:
		if st.Tool != "" {
			return errors.New("kind instructions takes no tool name")
		}
		if st.ReturnsSecrets {
			return errors.New("returns_secrets is for a tool")
		}
	case KindEgress:
		if st.Tool != "" {
			return errors.New("kind egress takes no tool name")
		}
		if _, err := EgressDests(st.Definition); err != nil {
			return err
		}
	case KindLaunch:
		if st.Tool != "" {
			return errors.New("kind launch takes no tool name")
		}
		if st.ReturnsSecrets {
			return errors.New("returns_secrets is for a tool")
		}
	default:
		return fmt.Errorf("unknown kind %q", st.Kind)
	}
	if st.Server == "" {
		return errors.New("server is empty")
	}
	if st.ApprovedAt.IsZero() {
		return errors.New("approved_at is zero")
	}
	if st.Resolves != nil && *st.Resolves > maxResolves {
		return fmt.Errorf("resolves %d is beyond 2^53", *st.Resolves)
	}
	// encoding/json would silently replace invalid UTF-8 with U+FFFD, so the
	// signed text would differ from what the caller passed.
	for _, s := range append([]string{st.Server, st.Tool, st.Note, st.KeyID}, st.AcceptedFindings...) {
		if !utf8.ValidString(s) {
			return errors.New("a text field is not valid UTF-8")
		}
	}
	if !st.Digest.Valid() {
		return fmt.Errorf("digest %q is not sha256:<64 hex>", st.Digest)
	}
	if len(st.Definition) == 0 {
		return errors.New("definition is empty")
	}
	got, _, err := Digest(st.Definition, Limits{})
	if err != nil {
		return fmt.Errorf("canonicalize definition: %w", err)
	}
	if got != st.Digest {
		return fmt.Errorf("digest %s does not match the definition's digest %s", st.Digest, got)
	}
	return nil
}

// envelope is standard DSSE JSON.
type envelope struct {
	PayloadType string         `json:"payloadType"`
	Payload     string         `json:"payload"`
	Signatures  []envSignature `json:"signatures"`
}

type envSignature struct {
	KeyID string `json:"keyid"`
	Sig   string `json:"sig"`
}

// b64 is strict so that no two encodings decode to the same bytes: a
// changed character in payload or sig always changes what is verified.
var b64 = base64.StdEncoding.Strict()

// pae is the DSSE v1 pre-authentication encoding.
func pae(payloadType string, payload []byte) []byte {
	var b bytes.Buffer
	b.WriteString("DSSEv1 ")
	b.WriteString(strconv.Itoa(len(payloadType)))
	b.WriteByte(' ')
	b.WriteString(payloadType)
	b.WriteByte(' ')
	b.WriteString(strconv.Itoa(len(payload)))
	b.WriteByte(' ')
	b.Write(payload)
	return b.Bytes()
}

// SignApproval sets st.KeyID to the signer's, checks st.Digest against the
// canonical definition, and returns a DSSE envelope whose payload is the
// canonical JSON of st: the exact bytes signed are the bytes stored.
func (s *Signer) SignApproval(st Statement) ([]byte, error) {
	st.KeyID = s.keyID
	if err := st.check(); err != nil {
		return nil, fmt.Errorf("sign approval: %w", err)
	}
	// The definition is stored in its canonical form, so verifiers and
	// humans read exactly what was digested.
	def, err := Canonical(st.Definition, Limits{})
	if err != nil {
		return nil, fmt.Errorf("sign approval: canonicalize definition: %w", err)
	}
	st.Definition = def
	st.ApprovedAt = st.ApprovedAt.UTC()
	return s.seal(PayloadType, st, "sign approval")
}

// seal signs v as a DSSE envelope of payloadType: its JSON, canonical,
// is the payload. what names the operation in errors.
func (s *Signer) seal(payloadType string, v any, what string) ([]byte, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("%s: marshal: %w", what, err)
	}
	payload, err := Canonical(raw, Limits{})
	if err != nil {
		return nil, fmt.Errorf("%s: canonicalize: %w", what, err)
	}
	sig, err := s.s.SignMessage(bytes.NewReader(pae(payloadType, payload)))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	env, err := json.Marshal(envelope{
		PayloadType: payloadType,
		Payload:     b64.EncodeToString(payload),
		Signatures:  []envSignature{{KeyID: s.keyID, Sig: b64.EncodeToString(sig)}},
	})
	if err != nil {
		return nil, fmt.Errorf("%s: marshal envelope: %w", what, err)
	}
	return env, nil
}

// Verifier checks approval envelopes against a fixed set of trusted public
// keys. It is safe for concurrent use.
type Verifier struct {
	keys map[string]signature.Verifier
}

// NewVerifier trusts exactly keys. A key that sigstore cannot load (not
// ed25519, or an ID that is not its own) is left out, so it can never
// verify anything.
func NewVerifier(keys []PublicKey) *Verifier {
	v := &Verifier{keys: make(map[string]signature.Verifier, len(keys))}
	for _, k := range keys {
		id, err := KeyID(k.Key)
		if err != nil || id != k.ID {
			continue
		}
		sv, err := signature.LoadVerifier(k.Key, 0)
		if err != nil {
			continue
		}
		v.keys[id] = sv
	}
	return v
}

// Trusted reports how many keys the verifier holds.
func (v *Verifier) Trusted() int { return len(v.keys) }

// open parses an envelope strictly, checks it is of payloadType and
// bounded, and returns its payload and the first trusted key whose
// signature verifies over it. Errors wrap ErrBadEnvelope,
// ErrUntrustedKey or ErrBadSignature.
func (v *Verifier) open(envelopeJSON []byte, payloadType string) (payload []byte, signer string, err error) {
	if len(envelopeJSON) > maxEnvelope {
		return nil, "", fmt.Errorf("%w: %d bytes", ErrBadEnvelope, len(envelopeJSON))
	}
	// Strict parse first: an envelope with duplicate keys could mean one
	// thing to us and another to a different DSSE reader.
	if err := validate(envelopeJSON, Limits{MaxBytes: maxEnvelope, MaxStringBytes: maxEnvelope}); err != nil {
		return nil, "", fmt.Errorf("%w: %w", ErrBadEnvelope, err)
	}
	var env envelope
	if err := json.Unmarshal(envelopeJSON, &env); err != nil {
		return nil, "", fmt.Errorf("%w: %w", ErrBadEnvelope, err)
	}
	if env.PayloadType != payloadType {
		return nil, "", fmt.Errorf("%w: payload type %q, want %q", ErrBadEnvelope, env.PayloadType, payloadType)
	}
	payload, err = b64.DecodeString(env.Payload)
	if err != nil {
		return nil, "", fmt.Errorf("%w: payload is not base64: %w", ErrBadEnvelope, err)
	}
	signer, err = v.trustedSigner(env, payload)
	if err != nil {
		return nil, "", err
	}
	return payload, signer, nil
}

// trustedSigner returns the id of the first trusted key whose signature
// on env verifies over the PAE of payload.
func (v *Verifier) trustedSigner(env envelope, payload []byte) (string, error) {
	if len(env.Signatures) == 0 {
		return "", fmt.Errorf("%w: no signatures", ErrUntrustedKey)
	}
	msg := pae(env.PayloadType, payload)
	var sigErr error
	for i, s := range env.Signatures {
		sv, ok := v.keys[s.KeyID]
		if !ok {
			continue
		}
		sig, err := b64.DecodeString(s.Sig)
		if err != nil {
			sigErr = fmt.Errorf("%w: signature %d by %s is not base64", ErrBadSignature, i, s.KeyID)
			continue
		}
		if err := sv.VerifySignature(bytes.NewReader(sig), bytes.NewReader(msg)); err != nil {
			sigErr = fmt.Errorf("%w: signature %d by %s: %w", ErrBadSignature, i, s.KeyID, err)
			continue
		}
		return s.KeyID, nil
	}
	if sigErr != nil {
		return "", sigErr
	}
	return "", fmt.Errorf("%w: signed by %s", ErrUntrustedKey, keyIDs(env.Signatures))
}

// Verify returns the statement of envelope if: the envelope parses, its
// payloadType is PayloadType, a signature by a trusted key id verifies over
// the DSSE PAE, the statement's KeyID is that signer's, and its Digest is
// the digest of its Definition's canonical form. Errors wrap
// ErrBadEnvelope, ErrUntrustedKey, ErrBadSignature or ErrBadStatement.
func (v *Verifier) Verify(envelopeJSON []byte) (Statement, error) {
	payload, signer, err := v.open(envelopeJSON, PayloadType)
	if err != nil {
		return Statement{}, err
	}

	// From here the payload is authentic; what remains is whether it says
	// something consistent.
	canon, err := Canonical(payload, Limits{})
	if err != nil {
		return Statement{}, fmt.Errorf("%w: %w", ErrBadStatement, err)
	}
	if !bytes.Equal(canon, payload) {
		return Statement{}, fmt.Errorf("%w: payload is not canonical JSON", ErrBadStatement)
	}
	var st Statement
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return Statement{}, fmt.Errorf("%w: decode: %w", ErrBadStatement, err)
	}
	if st.KeyID != signer {
		return Statement{}, fmt.Errorf("%w: statement names key %s but was signed by %s", ErrBadStatement, st.KeyID, signer)
	}
	if err := st.check(); err != nil {
		return Statement{}, fmt.Errorf("%w: %w", ErrBadStatement, err)
	}
	return st, nil
}

func keyIDs(sigs []envSignature) string {
	var b bytes.Buffer
	for i, s := range sigs {
		if i > 0 {
			b.WriteString(", ")
		}
		id := s.KeyID
		if len(id) > 80 {
			id = id[:80]
		}
		b.WriteString(strconv.Quote(id))
	}
	return b.String()
}

// StatementOf decodes an envelope's statement without checking its
// signatures. It is only for bytes Verify accepted before and that are
// known by their hash to be those very bytes (a cache of verdicts that
// keeps no definitions); bytes from anywhere else go through Verify.
func StatementOf(envelopeJSON []byte) (Statement, error) {
	var env envelope
	if err := json.Unmarshal(envelopeJSON, &env); err != nil {
		return Statement{}, fmt.Errorf("%w: %w", ErrBadEnvelope, err)
	}
	payload, err := b64.DecodeString(env.Payload)
	if err != nil {
		return Statement{}, fmt.Errorf("%w: payload is not base64: %w", ErrBadEnvelope, err)
	}
	var st Statement
	if err := json.Unmarshal(payload, &st); err != nil {
		return Statement{}, fmt.Errorf("%w: decode: %w", ErrBadStatement, err)
	}
	return st, nil
}
