package signatures

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// An egress statement has one signed form per set: its definition is the
// destinations sorted and each once, it verifies and names its server, and
// a definition written any other way is refused on both sides.
func TestEgressStatement(t *testing.T) {
	s := newSigner(t)
	v := NewVerifier([]PublicKey{s.PublicKey()})
	st, err := EgressStatement("srv", []string{"b.example:443", "a.example:443", "b.example:443"}, Review{Seq: 4, ApprovedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if string(st.Definition) != `["a.example:443","b.example:443"]` {
		t.Fatalf("definition %s", st.Definition)
	}
	empty, err := EgressStatement("srv", nil, Review{ApprovedAt: time.Now()})
	if err != nil || string(empty.Definition) != `[]` {
		t.Fatalf("the empty set: %s, %v", empty.Definition, err)
	}
	env, err := s.SignApproval(st)
	if err != nil {
		t.Fatal(err)
	}
	got, err := v.Verify(env)
	if err != nil || !got.Names(KindEgress, "srv", "", st.Digest) || got.Names(KindInstructions, "srv", "", st.Digest) {
		t.Fatalf("verify: %+v, %v", got, err)
	}
	if dests, err := EgressDests(got.Definition); err != nil || fmt.Sprint(dests) != "[a.example:443 b.example:443]" {
		t.Fatalf("EgressDests: %v, %v", dests, err)
	}

	for _, def := range []string{`["b.example:443","a.example:443"]`, `["a.example:443","a.example:443"]`, `[1]`, `{"a":1}`, `null`, `[""]`} {
		if _, err := EgressDests(json.RawMessage(def)); err == nil {
			t.Errorf("EgressDests(%s) accepted", def)
		}
		bad := st
		bad.Definition = json.RawMessage(def)
		if d, _, err := Digest(bad.Definition, Limits{}); err == nil {
			bad.Digest = d
		}
		if _, err := s.SignApproval(bad); err == nil {
			t.Errorf("signed an egress statement with definition %s", def)
		}
	}
	withTool := st
	withTool.Tool = "x"
	if _, err := s.SignApproval(withTool); err == nil || !strings.Contains(err.Error(), "takes no tool") {
		t.Errorf("an egress statement naming a tool: %v", err)
	}
	many := make([]string, MaxEgressDests+1)
	for i := range many {
		many[i] = fmt.Sprintf("h%d.example:443", i)
	}
	if _, err := EgressStatement("srv", many, Review{ApprovedAt: time.Now()}); err == nil {
		t.Error("an egress statement past the bound")
	}
	if _, err := v.Verify(env[:len(env)-3]); !errors.Is(err, ErrBadEnvelope) {
		t.Errorf("a cut envelope: %v", err)
	}
}
