package signatures

import (
	"errors"
	"strings"
	"testing"
)

func mustDigest(t *testing.T, raw string) string {
	t.Helper()
	d, _, err := Digest([]byte(raw), Limits{})
	if err != nil {
		t.Fatalf("Digest(%q): %v", raw, err)
	}
	if !d.Valid() {
		t.Fatalf("Digest(%q) = %q, not a valid digest", raw, d)
	}
	return string(d)
}

func TestCanonicalForms(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"whitespace", " { \"b\" : 1 ,\n\t\"a\" : [ 1 , 2 ] } ", `{"a":[1,2],"b":1}`},
		{"nested sort", `{"z":{"y":1,"x":2},"a":null}`, `{"a":null,"z":{"x":2,"y":1}}`},
		{"one point zero", `1.0`, `1`},
		{"exponent", `1e2`, `100`},
		{"big exponent", `1E30`, `1e+30`},
		{"small", `0.000001`, `0.000001`},
		{"smaller", `0.0000001`, `1e-7`},
		{"negative zero", `-0`, `0`},
		{"trailing zeros", `4.50`, `4.5`},
		{"double rounding", `333333333.33333329`, `333333333.3333333`},
		{"2^53+1", `9007199254740993`, `9007199254740992`},
		{"escapes", `"\u0041\/\u00e9\u20ac"`, `"A/é€"`},
		{"control kept escaped", `"\u000f\n\u001b"`, `"\u000f\n\u001b"`},
		{"del and line separator stay raw", `"\u007f\u2028"`, "\"\x7f\u2028\""},
		{"surrogate pair", `"\ud83d\ude00"`, `"😀"`},
		{"literals", `[true,false,null]`, `[true,false,null]`},
		{"empty containers", `{"a":{},"b":[]}`, `{"a":{},"b":[]}`},
		// RFC 8785 §3.2.3 sorts on UTF-16 code units, not code points.
		{
			"utf16 order",
			`{"\u20ac":1,"\r":2,"\ufb33":3,"1":4,"\ud83d\ude00":5,"\u0080":6,"\u00f6":7}`,
			"{\"\\r\":2,\"1\":4,\"\u0080\":6,\"\u00f6\":7,\"\u20ac\":1,\"\U0001F600\":5,\"\ufb33\":3}",
		},
		// The RFC 8785 §3.2.2 example.
		{
			"rfc 8785 example",
			`{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
			  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
			  "literals": [null, true, false]}`,
			`{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Canonical([]byte(tt.in), Limits{})
			if err != nil {
				t.Fatalf("Canonical: %v", err)
			}
			if string(got) != tt.want {
				t.Errorf("Canonical(%s)\n got %s\nwant %s", tt.in, got, tt.want)
			}
		})
	}
}

func TestDigestStable(t *testing.T) {
	base := `{"name":"add","description":"Adds two numbers.","inputSchema":{"type":"object","properties":{"a":{"type":"number"},"b":{"type":"number"}},"required":["a","b"]}}`
	same := []struct{ name, in string }{
		{"identical", base},
		{"pretty", "{\n  \"name\": \"add\",\n  \"description\": \"Adds two numbers.\",\n  \"inputSchema\": {\n    \"type\": \"object\",\n    \"properties\": {\"a\": {\"type\": \"number\"}, \"b\": {\"type\": \"number\"}},\n    \"required\": [\"a\", \"b\"]\n  }\n}\n"},
		{"keys reordered", `{"inputSchema":{"required":["a","b"],"properties":{"b":{"type":"number"},"a":{"type":"number"}},"type":"object"},"description":"Adds two numbers.","name":"add"}`},
		{"escaped letters", `{"name":"\u0061dd","description":"Adds two numbers\u002e","inputSchema":{"type":"object","properties":{"a":{"type":"number"},"b":{"type":"number"}},"required":["a","b"]}}`},
	}
	want := mustDigest(t, base)
	for _, tt := range same {
		t.Run(tt.name, func(t *testing.T) {
			if got := mustDigest(t, tt.in); got != want {
				t.Errorf("digest changed: %s, want %s", got, want)
			}
		})
	}

	differ := []struct{ name, in string }{
		{"array order", strings.Replace(base, `["a","b"]`, `["b","a"]`, 1)},
		{"number type", strings.Replace(base, `"type":"object"`, `"type":"objects"`, 1)},
		{"extra field", strings.Replace(base, `{"name"`, `{"title":"","name"`, 1)},
		{"null vs absent", strings.Replace(base, `{"name"`, `{"x":null,"name"`, 1)},
		{"trailing space in string", strings.Replace(base, `two numbers.`, `two numbers. `, 1)},
		{"zero width space", strings.Replace(base, `two numbers.`, "two\u200b numbers.", 1)},
		{"number vs string", `{"a":1}`},
	}
	for _, tt := range differ {
		t.Run(tt.name, func(t *testing.T) {
			if got := mustDigest(t, tt.in); got == want {
				t.Errorf("digest unchanged for %s", tt.in)
			}
		})
	}
}

// TestDigestEveryCharacter changes each character of every string in turn:
// each must change the digest, and no two changes may collide.
func TestDigestEveryCharacter(t *testing.T) {
	base := `{"name":"add","description":"Adds two numbers.","annotations":{"readOnlyHint":true},"n":12.5}`
	want := mustDigest(t, base)
	seen := map[string]int{}
	for i := 0; i < len(base); i++ {
		c := base[i]
		var r byte
		switch {
		case c >= 'a' && c <= 'y', c >= 'A' && c <= 'Y', c >= '0' && c <= '8':
			r = c + 1
		case c == '.', c == ' ':
			r = 'x'
		default:
			continue // structure; changing it makes different JSON or none
		}
		mod := base[:i] + string(r) + base[i+1:]
		d, _, err := Digest([]byte(mod), Limits{})
		if err != nil {
			continue // e.g. "true" -> "uRue": not JSON, fine
		}
		if string(d) == want {
			t.Errorf("byte %d (%q->%q) did not change the digest", i, c, r)
		}
		if j, ok := seen[string(d)]; ok {
			t.Errorf("changes at %d and %d collide", j, i)
		}
		seen[string(d)] = i
	}
	if len(seen) < 40 {
		t.Fatalf("only %d mutations digested; test is not exercising strings", len(seen))
	}
}

func TestHostile(t *testing.T) {
	deep := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	deepObj := func(n int) string { return strings.Repeat(`{"a":`, n) + "1" + strings.Repeat("}", n) }
	tests := []struct {
		name   string
		in     string
		lim    Limits
		reason string
		path   string
	}{
		{"duplicate key", `{"a":1,"a":2}`, Limits{}, ReasonDuplicateKey, "/a"},
		{"duplicate key same value", `{"a":1,"b":2,"a":1}`, Limits{}, ReasonDuplicateKey, "/a"},
		{"duplicate nested", `{"x":{"y":[{"k":1,"k":1}]}}`, Limits{}, ReasonDuplicateKey, "/x/y/0/k"},
		{"duplicate by escape", `{"name":1,"n\u0061me":2}`, Limits{}, ReasonDuplicateKey, "/name"},
		{"duplicate pointer escaping", `{"a/b~":{"c":1,"c":2}}`, Limits{}, ReasonDuplicateKey, "/a~1b~0/c"},
		{"invalid utf8 value", "{\"a\":\"\xff\"}", Limits{}, ReasonInvalidUTF8, "/a"},
		{"invalid utf8 key", "{\"\xc3\x28\":1}", Limits{}, ReasonInvalidUTF8, "/\ufffd("},
		{"overlong utf8", "[\"\xc0\xaf\"]", Limits{}, ReasonInvalidUTF8, "/0"},
		{"utf8 encoded surrogate", "[\"\xed\xa0\x80\"]", Limits{}, ReasonInvalidUTF8, "/0"},
		{"lone high surrogate", `{"d":"x\ud800y"}`, Limits{}, ReasonLoneSurrogate, "/d"},
		{"lone high at end", `["\ud800"]`, Limits{}, ReasonLoneSurrogate, "/0"},
		{"lone low surrogate", `["\udc00"]`, Limits{}, ReasonLoneSurrogate, "/0"},
		{"high then non-low", `["\ud800\u0041"]`, Limits{}, ReasonLoneSurrogate, "/0"},
		{"high then high", `["\ud800\ud800"]`, Limits{}, ReasonLoneSurrogate, "/0"},
		{"reversed pair", `["\ude00\ud83d"]`, Limits{}, ReasonLoneSurrogate, "/0"},
		{"lone surrogate in key", `{"\udfff":1}`, Limits{}, ReasonLoneSurrogate, "/\ufffd"},
		{"depth 65 arrays", deep(65), Limits{}, ReasonTooDeep, strings.Repeat("/0", 64)},
		{"depth 65 objects", deepObj(65), Limits{}, ReasonTooDeep, strings.Repeat("/a", 64)},
		{"custom depth", deep(4), Limits{MaxDepth: 3}, ReasonTooDeep, "/0/0/0"},
		{"huge string", `{"d":"` + strings.Repeat("x", 1<<20+1) + `"}`, Limits{}, ReasonStringTooLong, "/d"},
		{"huge key", `{"` + strings.Repeat("k", 101) + `":1}`, Limits{MaxStringBytes: 100}, ReasonStringTooLong, "/" + strings.Repeat("k", 101)},
		{"too large", `[` + strings.Repeat(`1,`, 100) + `1]`, Limits{MaxBytes: 100}, ReasonTooLarge, ""},
		{"trailing value", `{} {}`, Limits{}, ReasonTrailingData, ""},
		{"trailing garbage", `{"a":1}x`, Limits{}, ReasonTrailingData, ""},
		{"trailing brace", `{"a":1}}`, Limits{}, ReasonTrailingData, ""},
		{"two numbers", `1 2`, Limits{}, ReasonTrailingData, ""},
		{"empty", ``, Limits{}, ReasonNotJSON, ""},
		{"whitespace only", " \n", Limits{}, ReasonNotJSON, ""},
		{"truncated", `{"a":[1,2`, Limits{}, ReasonNotJSON, ""},
		{"single quotes", `{'a':1}`, Limits{}, ReasonNotJSON, ""},
		{"trailing comma", `[1,2,]`, Limits{}, ReasonNotJSON, ""},
		{"NaN", `[NaN]`, Limits{}, ReasonNotJSON, ""},
		{"leading zero", `[01]`, Limits{}, ReasonNotJSON, ""},
		{"raw control in string", "[\"a\x01\"]", Limits{}, ReasonNotJSON, ""},
		{"bad escape", `["\x41"]`, Limits{}, ReasonNotJSON, ""},
		{"bom", "\ufeff{}", Limits{}, ReasonNotJSON, ""},
		{"number overflow", `{"n":1e400}`, Limits{}, ReasonNumberRange, "/n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := Canonical([]byte(tt.in), tt.lim)
			if err == nil {
				t.Fatalf("accepted, canonical %q", out)
			}
			var h *HostileError
			if !errors.As(err, &h) {
				t.Fatalf("error %v (%T) is not *HostileError", err, err)
			}
			if !IsHostile(err) {
				t.Error("IsHostile = false")
			}
			if h.Reason != tt.reason {
				t.Errorf("reason %q, want %q (%v)", h.Reason, tt.reason, err)
			}
			if tt.path != "" && h.Path != tt.path {
				t.Errorf("path %q, want %q", h.Path, tt.path)
			}
			if !strings.Contains(err.Error(), tt.reason) {
				t.Errorf("Error() %q does not say %q", err, tt.reason)
			}
			if len(err.Error()) > 600 {
				t.Errorf("Error() is %d bytes; hostile input leaks into messages", len(err.Error()))
			}
		})
	}
}

func TestLimitsAtBoundary(t *testing.T) {
	ok := []struct {
		name string
		in   string
		lim  Limits
	}{
		{"depth 64", strings.Repeat("[", 64) + strings.Repeat("]", 64), Limits{}},
		{"string at limit", `"` + strings.Repeat("x", 100) + `"`, Limits{MaxStringBytes: 100}},
		{"bytes at limit", `[` + strings.Repeat(`1,`, 48) + `1]`, Limits{MaxBytes: 99}},
		{"escaped backslash before u", `["\\ud800"]`, Limits{}},
		{"nul escape", `["\u0000"]`, Limits{}},
		{"tag characters", `["\udb40\udc41\udb40\udc7f"]`, Limits{}},
		{"tiny number underflows to zero", `1e-400`, Limits{}},
	}
	for _, tt := range ok {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Canonical([]byte(tt.in), tt.lim); err != nil {
				t.Fatalf("rejected: %v", err)
			}
		})
	}
}

func TestHostileErrorQuotesPath(t *testing.T) {
	_, err := Canonical([]byte("{\"\\u001b[2J\":1,\"\\u001b[2J\":2}"), Limits{})
	if err == nil {
		t.Fatal("accepted")
	}
	if strings.ContainsRune(err.Error(), 0x1b) {
		t.Errorf("raw escape character in error %q", err)
	}
}

func TestDigestOf(t *testing.T) {
	// sha256("") is well known.
	const empty = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	if got := DigestOf(nil); got != empty {
		t.Errorf("DigestOf(nil) = %s", got)
	}
	d, c, err := Digest([]byte(` {"b":2, "a":1} `), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if string(c) != `{"a":1,"b":2}` || d != DigestOf(c) {
		t.Errorf("Digest = %s, %s", d, c)
	}
}
