package signatures

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gowebpki/jcs"
)

func FuzzCanonical(f *testing.F) {
	for _, s := range []string{
		`{}`, `[]`, `null`, `1.0`, `-0`, `1e400`, `"\ud800"`, `"\ud83d\ude00"`,
		`{"a":1,"a":2}`, `{"b":[1,{"c":"\u00e9"}],"a":"x"}`, "\"\xff\"", `[[[[]]]]`,
		`{"a":1} {}`, `"\\ud800"`, `{"\u0000":"\u001f"}`, `0.1e-7`, `123456789012345678901234567890`,
	} {
		f.Add([]byte(s))
	}
	if raw, err := os.ReadFile(filepath.Join("testdata", "tool-cases.json")); err == nil {
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		lim := Limits{MaxDepth: 32, MaxStringBytes: 4096, MaxBytes: 1 << 16}
		c, err := Canonical(raw, lim)
		if err != nil {
			if !IsHostile(err) {
				t.Fatalf("error %v is not a *HostileError", err)
			}
			if ve := validate(raw, lim); ve == nil {
				// Our parser accepted what jcs refused: a disagreement
				// between the two parsers is a bug to look at.
				t.Fatalf("validate accepted, jcs refused: %v", err)
			}
			return
		}
		// The fast path (a limits scan, then jcs) must never accept what
		// the strict walk refuses.
		if ve := validate(raw, lim); ve != nil {
			t.Fatalf("fast path accepted %q, validate refuses: %v", raw, ve)
		}
		c2, err := Canonical(c, lim)
		if err != nil {
			t.Fatalf("canonical output %q refused: %v", c, err)
		}
		if !bytes.Equal(c, c2) {
			t.Fatalf("not idempotent:\n %q\n %q", c, c2)
		}
		// Whatever we accept, jcs accepts identically on its own.
		j, err := jcs.Transform(raw)
		if err != nil || !bytes.Equal(j, c) {
			t.Fatalf("jcs.Transform disagrees: %q, %v", j, err)
		}
	})
}

// membersSeeds are inputs at each edge of membersFast: what it must pass
// on (duplicates and case-duplicates at any depth, escaped names, Kelvin
// signs, surrogate halves, exponents, depth and length limits, bad UTF-8,
// trailing data) and what it should vouch for (honest messages).
var membersSeeds = []string{
	`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi \"there\" \\ \u00e9"}}}`,
	`{"name":"get-env","NAME":"echo"}`, `{"a":{"b":1,"B":2}}`, `[{"x":1},{"x":1}]`, `{"a":1,"a":1}`,
	`{"n\u0061me":1,"name":2}`, `{"\u212aey":1,"key":2}`, `{"kelvin":1,"Kelvin":2}`, `{"ſ":1,"S":2}`,
	`{"a":"\ud800"}`, `{"a":"\ud83d\ude00"}`, `{"a":"\\ud800"}`, `{"a":1e400}`, `{"a":1E2}`, `{"a":-0.5}`,
	`{"a":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}`,
	"{\"a\":\"\xff\"}", `{"a":1} {}`, `{"a" : 1 , "A" : 2}`, "{\"a\"\n:1,\"b\"\t:2}", `{"a:":1,"a":2}`,
	`{"":1,"":2}`, `"x"`, `123`, `{"k":"` + strings.Repeat("v", 5000) + `"}`, `[` + strings.Repeat("9", 400) + `]`,
}

// FuzzCheckMembers: the byte scan never vouches for input the walk
// refuses, under tight limits and the defaults alike.
func FuzzCheckMembers(f *testing.F) {
	for _, s := range membersSeeds {
		f.Add([]byte(s))
	}
	if raw, err := os.ReadFile(filepath.Join("testdata", "tool-cases.json")); err == nil {
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		for _, lim := range []Limits{{MaxDepth: 32, MaxStringBytes: 4096, MaxBytes: 1 << 16}, {}} {
			if membersFast(raw, lim) {
				if err := walk(raw, lim, true); err != nil {
					t.Fatalf("membersFast vouched for %q, the walk refuses: %v", raw, err)
				}
			}
		}
	})
}

// The scan does vouch for honest messages, or it saves nothing.
func TestMembersFastPassesHonestMessages(t *testing.T) {
	for _, s := range []string{membersSeeds[0], `{"a":{"b":1,"c":[1,2,{"b":3}]},"b":true,"c":null}`, `{"a" : 1 , "b" : -2.5}`} {
		if !membersFast([]byte(s), Limits{}) {
			t.Errorf("membersFast(%s) = false", s)
		}
	}
	// A listing of 50 tools as a go-sdk server writes it.
	var tools []string
	for i := range 50 {
		tools = append(tools, fmt.Sprintf(`{"name":"tool_%02d","description":"Looks up records by id.",`+
			`"inputSchema":{"type":"object","properties":{"id":{"type":"string"},"page":{"type":"integer","minimum":1}},`+
			`"required":["id"]},"annotations":{"readOnlyHint":true}}`, i))
	}
	if listing := `{"tools":[` + strings.Join(tools, ",") + `]}`; !membersFast([]byte(listing), Limits{}) {
		t.Errorf("membersFast refuses a listing of 50 tools")
	}
	call := []byte(membersSeeds[0])
	if n := testing.AllocsPerRun(100, func() { _ = CheckMembers(call, Limits{}) }); n > 0 && !raceBuild {
		t.Errorf("CheckMembers of a tools/call allocates %.0f times", n)
	}
}
