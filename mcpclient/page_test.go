package mcpclient

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

// decodedPage is what encoding/json makes of a page, readPage's model.
type decodedPage struct {
	Tools      *[]json.RawMessage `json:"tools"`
	NextCursor *string            `json:"nextCursor"`
	ResultType *string            `json:"resultType"`
	TTLMs      json.RawMessage    `json:"ttlMs"`
	CacheScope json.RawMessage    `json:"cacheScope"`
}

func samePage(t interface {
	Helper()
	Fatalf(string, ...any)
}, raw string) {
	t.Helper()
	var want decodedPage
	wantErr := json.Unmarshal([]byte(raw), &want)
	got, err := readPage([]byte(raw))
	if wantErr != nil {
		// readPage may pass what it does not walk, but never past the
		// whole-page check a new listing goes through.
		if err == nil && checkPageKeys([]byte(raw), 64) == nil {
			t.Fatalf("%q: encoding/json refuses it (%v), readPage and checkPageKeys pass it", raw, wantErr)
		}
		return
	}
	if err != nil {
		t.Fatalf("%q: encoding/json reads it, readPage refuses it: %v", raw, err)
	}
	if !reflect.DeepEqual(pageFields(want), got) {
		t.Fatalf("%q:\nencoding/json %+v\nreadPage      %+v", raw, want, got)
	}
}

func TestReadPageCases(t *testing.T) {
	for _, raw := range []string{
		`{"tools":[]}`, `{"tools":[{"name":"a"}, {"name":"b","x":[1,{"y":"]"}]}],"nextCursor":"c2"}`,
		` { "tools" : [ {"name":"a\"}"} ] , "resultType":"complete" } `, `null`, ` null `, `{}`,
		`{"Tools":[{"name":"a"}]}`, `{"TOOLS":[1],"tools":[2]}`, `{"tools":[1],"tools":null}`, `{"t\u006fols":[{"name":"x"}]}`,
		`{"nextCursor":null}`, `{"nextCursor":5}`, `{"ttlMs":1000,"cacheScope":"session"}`, `{"ttlMs":null}`,
		`{"tools":{}}`, `{"tools":"x"}`, `[]`, `{"tools":[}`, `{"tools":[1,]}`, `{"tools":[1 2]}`, `{"tools":[]`,
		`{"tools":[]}x`, `{"a" 1}`, `{"a":}`, `{,}`, `{"tools":["\u0000"]}`, `{"tools":[tru]}`, `{"nextCursor":"\ud800"}`,
		`{"to\u212Als":[]}`, `{"tooſs":[]}`, `{"tools":[[[[[]]]]]}`, "{\"tools\":[\"a\\\\\"]}",
	} {
		samePage(t, raw)
	}
}

// TestReadPageRapid: on drawn pages readPage reads what encoding/json
// reads, and what it refuses is refused by one of the two checks.
func TestReadPageRapid(t *testing.T) {
	names := []string{`"tools"`, `"Tools"`, `"nextCursor"`, `"NEXTCURSOR"`, `"resultType"`, `"ttlMs"`, `"cacheScope"`, `"x"`, `"t\u006fols"`, `"tooLs"`}
	values := []string{`[]`, `[{"name":"a"}]`, `[{"name":"a"},{"name":"b","d":"} ] \" ,"}]`, `null`, `"c1"`, `""`, `5`, `true`, `{"a":[1,2]}`, `[1,[2,[3]]]`, `"\\"`, `"a\"b\\"`, `["\\\"", "\\\\"]`, `"\u00e9"`, `[`, `]`, `{`, `"`, `,`, ``, `nul`}
	spaces := []string{"", " ", "\n", "\t "}
	rapid.Check(t, func(rt *rapid.T) {
		var b strings.Builder
		b.WriteString(rapid.SampledFrom(spaces).Draw(rt, "lead"))
		b.WriteString(rapid.SampledFrom([]string{"{", "{", "{", "[", ""}).Draw(rt, "open"))
		for i := range rapid.IntRange(0, 5).Draw(rt, "members") {
			if i > 0 {
				b.WriteString(rapid.SampledFrom([]string{",", ",", ", ", "", ",,"}).Draw(rt, "comma"))
			}
			b.WriteString(rapid.SampledFrom(names).Draw(rt, "name"))
			b.WriteString(rapid.SampledFrom([]string{":", ": ", " :", ""}).Draw(rt, "colon"))
			b.WriteString(rapid.SampledFrom(values).Draw(rt, "value"))
		}
		b.WriteString(rapid.SampledFrom([]string{"}", "}", "} ", "", "}}", "]"}).Draw(rt, "close"))
		samePage(rt, b.String())
	})
}
