package detect

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/rugwatch/rugwatch"
)

// Diff lists the field-level changes that turn the JSON document a into b,
// as RFC 6901 pointers with add, remove or replace. Both documents must be
// valid JSON (callers pass canonical forms). Arrays are compared by index.
func Diff(a, b json.RawMessage) []rugwatch.Change {
	var av, bv any
	if err := decode(a, &av); err != nil {
		return []rugwatch.Change{{Path: "", Op: "replace", New: b}}
	}
	if err := decode(b, &bv); err != nil {
		return []rugwatch.Change{{Path: "", Op: "replace", Old: a}}
	}
	var out []rugwatch.Change
	diffValue("", av, bv, &out)
	return out
}

func decode(raw json.RawMessage, v *any) error {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	return d.Decode(v)
}

func diffValue(path string, a, b any, out *[]rugwatch.Change) {
	switch av := a.(type) {
	case map[string]any:
		if bv, ok := b.(map[string]any); ok {
			keys := make([]string, 0, len(av)+len(bv))
			for k := range av {
				keys = append(keys, k)
			}
			for k := range bv {
				if _, ok := av[k]; !ok {
					keys = append(keys, k)
				}
			}
			sort.Strings(keys)
			for _, k := range keys {
				p := path + "/" + escapePointer(k)
				x, inA := av[k]
				y, inB := bv[k]
				switch {
				case !inA:
					*out = append(*out, rugwatch.Change{Path: p, Op: "add", New: mustJSON(y)})
				case !inB:
					*out = append(*out, rugwatch.Change{Path: p, Op: "remove", Old: mustJSON(x)})
				default:
					diffValue(p, x, y, out)
				}
			}
			return
		}
	case []any:
		if bv, ok := b.([]any); ok {
			n := max(len(av), len(bv))
			for i := range n {
				p := path + "/" + strconv.Itoa(i)
				switch {
				case i >= len(av):
					*out = append(*out, rugwatch.Change{Path: p, Op: "add", New: mustJSON(bv[i])})
				case i >= len(bv):
					*out = append(*out, rugwatch.Change{Path: p, Op: "remove", Old: mustJSON(av[i])})
				default:
					diffValue(p, av[i], bv[i], out)
				}
			}
			return
		}
	}
	ja, jb := mustJSON(a), mustJSON(b)
	if !bytes.Equal(ja, jb) {
		*out = append(*out, rugwatch.Change{Path: path, Op: "replace", Old: ja, New: jb})
	}
}

func escapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

func mustJSON(v any) json.RawMessage {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	// Keep <, > and & as they are: the diff is shown to humans, who must see
	// exactly the characters the model reads.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return json.RawMessage("null")
	}
	return bytes.TrimRight(buf.Bytes(), "\n")
}

// maxChangeValue bounds each old or new value carried in events, records
// and alerts: one drifted 1 MB description must not make a 2 MB webhook
// that receivers refuse. `rugwatch diff` recomputes the full change.
const MaxChangeValue = 8 << 10

// capChanges truncates long old and new values, saying how much was cut.
func CapChanges(cs []rugwatch.Change) []rugwatch.Change {
	out := make([]rugwatch.Change, len(cs))
	for i, c := range cs {
		c.Old, c.New = capValue(c.Old), capValue(c.New)
		out[i] = c
	}
	return out
}

func capValue(raw json.RawMessage) json.RawMessage {
	if len(raw) <= MaxChangeValue {
		return raw
	}
	var s string
	text := string(raw)
	if json.Unmarshal(raw, &s) == nil {
		text = s
	}
	cut := MaxChangeValue
	for cut > 0 && !utf8.RuneStart(text[cut]) {
		cut--
	}
	b, _ := json.Marshal(fmt.Sprintf("%s…[%d more bytes; see rugwatch diff]", text[:cut], len(text)-cut))
	return b
}
