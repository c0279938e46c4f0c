package detect

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

// decodedTexts is what ScanResult read of a result before readResult: the
// texts of the decoded map, in order, and isError; ok false when the
// decode failed.
func decodedTexts(raw []byte) (texts []resultText, isErr, hasStructured, ok bool) {
	var res map[string]any
	if decodeResult(raw, &res) != nil {
		return nil, false, false, false
	}
	isErr, _ = res["isError"].(bool)
	if content, ok := res["content"].([]any); ok {
		for i, c := range content {
			item, ok := c.(map[string]any)
			if !ok {
				continue
			}
			if text, ok := item["text"].(string); ok {
				texts = append(texts, resultText{text: text, path: fmt.Sprintf("/content/%d/text", i), item: i})
			}
			if r, ok := item["resource"].(map[string]any); ok {
				if text, ok := r["text"].(string); ok {
					texts = append(texts, resultText{text: text, path: fmt.Sprintf("/content/%d/resource/text", i), item: i, resource: true})
				}
			}
		}
	}
	_, hasStructured = res["structuredContent"]
	return texts, isErr, hasStructured, true
}

// TestReadResultAgreesWithDecode: on valid and broken results alike,
// readResult either leaves the result to the full decode or reads exactly
// what the decode gives.
func TestReadResultAgreesWithDecode(t *testing.T) {
	docs := []string{}
	for _, c := range goldenCases(t) {
		if len(c.Raw) < 4096 {
			docs = append(docs, string(c.Raw))
		}
	}
	rng := rand.New(rand.NewPCG(5, 6))
	alphabet := []string{`"`, `\`, `{`, `}`, `[`, `]`, `,`, `:`, ` `, `\u`, `\ud83d`, `\udc00`, `0`, `-`, `.`, `e`, `true`, `null`,
		"\xff", "\xc3", "\x01", `"text"`, `"content"`, `"isError"`, `"resource"`, `/`, `\n`, `a`, "é"}
	read, valid := 0, 0
	check := func(doc string) {
		texts, isErr, ok := readResult([]byte(doc))
		wantTexts, wantErr, structured, decoded := decodedTexts([]byte(doc))
		if decoded {
			valid++
		}
		if !ok {
			return
		}
		read++
		if !decoded {
			t.Fatalf("read what the decoder rejects: %q", doc)
		}
		if structured {
			t.Fatalf("read a result with structured content: %q", doc)
		}
		if isErr != wantErr || !reflect.DeepEqual(texts, wantTexts) {
			t.Fatalf("%q:\n read   %v %+v\n decode %v %+v", doc, isErr, texts, wantErr, wantTexts)
		}
	}
	for _, d := range docs {
		check(d)
		for range 8 {
			b := []byte(d)
			for range 1 + rng.IntN(3) {
				if len(b) == 0 {
					break
				}
				at := rng.IntN(len(b) + 1)
				switch rng.IntN(3) {
				case 0:
					if at < len(b) {
						b = append(b[:at:at], b[at+1:]...)
					}
				default:
					ins := alphabet[rng.IntN(len(alphabet))]
					b = append(b[:at:at], append([]byte(ins), b[at:]...)...)
				}
			}
			check(string(b))
		}
	}
	// Strings of every escape and byte the decoder unquotes.
	for range 20000 {
		var sb strings.Builder
		for range rng.IntN(12) {
			switch rng.IntN(8) {
			case 0:
				fmt.Fprintf(&sb, `\u%04x`, rng.IntN(0x10000))
			case 1:
				fmt.Fprintf(&sb, `\u%04X\u%04x`, 0xd800+rng.IntN(0x800), 0xd800+rng.IntN(0x800))
			case 2:
				sb.WriteString([]string{`\"`, `\\`, `\/`, `\b`, `\f`, `\n`, `\r`, `\t`, `\'`, `\x`}[rng.IntN(10)])
			case 3:
				sb.WriteByte(byte(rng.IntN(256)))
			default:
				sb.WriteString([]string{"a", "é", "日", "😀", " ", "\u2028"}[rng.IntN(6)])
			}
		}
		check(`{"content":[{"type":"text","text":"` + sb.String() + `"}],"isError":true}`)
		check(`{"content":[{"resource":{"text":"` + sb.String() + `"}}]}`)
	}
	t.Logf("%d results the decoder reads, %d of them read without it", valid, read)
}
