package clients

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
)

// A client file is edited as text, addressed by key path, never
// re-encoded: an install replaces, removes or adds whole entries and
// everything else (other keys, their order, JSONC comments) stays byte for
// byte; an uninstall undoes exactly those edits. Each edit parses the file
// again, so edits never share offsets.

var bom = []byte("\xef\xbb\xbf")

// member is one key of a JSON object, by byte offsets into the file.
type member struct {
	key                            string
	keyStart, valueStart, valueEnd int
}

// object is one JSON object of a client file.
type object struct {
	open, close int // offsets of its { and }
	members     []member
}

func (o *object) member(key string) (member, int, bool) {
	for i, m := range o.members {
		if m.key == key {
			return m, i, true
		}
	}
	return member{}, -1, false
}

// errNoObject: some key on the path is missing.
var errNoObject = errors.New("no such object")

// locate finds the object at path (object keys from the root). A key
// present twice in an object on the way, or in the object itself, is an
// error: the client (which keeps the last) and rugwatch could read
// different entries. A key on the path that holds something other than an
// object is an error too; a missing one is errNoObject.
func locate(doc []byte, path []string) (*object, error) {
	shift := 0
	if bytes.HasPrefix(doc, bom) {
		shift = len(bom)
	}
	clean := stripJSONC(doc)
	d := json.NewDecoder(bytes.NewReader(clean))
	obj, err := readObject(d, clean, nil, path)
	if err != nil {
		return nil, err
	}
	obj.open += shift
	obj.close += shift
	for i := range obj.members {
		m := &obj.members[i]
		m.keyStart += shift
		m.valueStart += shift
		m.valueEnd += shift
	}
	return obj, nil
}

func readObject(d *json.Decoder, clean []byte, at, path []string) (*object, error) {
	tok, err := d.Token()
	if err != nil {
		return nil, syntaxErr(err)
	}
	if tok != json.Delim('{') {
		return nil, fmt.Errorf("%s is not a JSON object", keyPath(at))
	}
	obj := &object{open: int(d.InputOffset()) - 1}
	var found *object
	seen := map[string]bool{}
	for d.More() {
		before := int(d.InputOffset())
		kt, err := d.Token()
		if err != nil {
			return nil, syntaxErr(err)
		}
		k, _ := kt.(string)
		if seen[k] {
			return nil, fmt.Errorf("%s holds the key %q twice", keyPath(at), k)
		}
		seen[k] = true
		if len(path) > 0 && k == path[0] {
			if found, err = readObject(d, clean, append(at, k), path[1:]); err != nil {
				return nil, err
			}
			continue
		}
		start := int(d.InputOffset())
		for start < len(clean) && (isBlank(clean[start]) || clean[start] == ':') {
			start++
		}
		var raw json.RawMessage
		if err := d.Decode(&raw); err != nil {
			return nil, syntaxErr(err)
		}
		if len(path) == 0 {
			keyStart := before + bytes.IndexByte(clean[before:], '"')
			obj.members = append(obj.members, member{k, keyStart, start, int(d.InputOffset())})
		}
	}
	if _, err := d.Token(); err != nil {
		return nil, syntaxErr(err)
	}
	obj.close = int(d.InputOffset()) - 1
	if len(path) == 0 {
		return obj, nil
	}
	if found == nil {
		return nil, errNoObject
	}
	return found, nil
}

func syntaxErr(err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	// The decoder's message never quotes the file's values.
	return fmt.Errorf("not valid JSON (with comments): %v", err)
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// keyPath spells a key path as people read it: mcpServers["github"].
func keyPath(path []string) string {
	if len(path) == 0 {
		return "the file"
	}
	var b strings.Builder
	b.WriteString(path[0])
	for _, k := range path[1:] {
		fmt.Fprintf(&b, "[%q]", k)
	}
	return b.String()
}

// memberValue returns the bytes of key's value in the object at path.
func memberValue(doc []byte, path []string, key string) ([]byte, bool, error) {
	obj, err := locate(doc, path)
	if errors.Is(err, errNoObject) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	m, _, ok := obj.member(key)
	if !ok {
		return nil, false, nil
	}
	return doc[m.valueStart:m.valueEnd], true, nil
}

// setMember replaces the value of key, which must exist, in the object at path.
func setMember(doc []byte, path []string, key string, value []byte) ([]byte, error) {
	obj, err := locate(doc, path)
	if err != nil {
		return nil, err
	}
	m, _, ok := obj.member(key)
	if !ok {
		return nil, fmt.Errorf("%s[%q]: no such entry", keyPath(path), key)
	}
	return splice(doc, m.valueStart, m.valueEnd, value), nil
}

// deleteMember removes key, with one comma and, where the member had its
// lines to itself, those lines.
func deleteMember(doc []byte, path []string, key string) ([]byte, error) {
	obj, err := locate(doc, path)
	if err != nil {
		return nil, err
	}
	m, i, ok := obj.member(key)
	if !ok {
		return nil, fmt.Errorf("%s[%q]: no such entry", keyPath(path), key)
	}
	clean := stripJSONC(doc)
	shift := len(doc) - len(clean) // the BOM
	at := func(off int) byte { return clean[off-shift] }
	start, end := m.keyStart, m.valueEnd
	j := end
	for j < len(doc) && isBlank(at(j)) {
		j++
	}
	switch {
	case j < len(doc) && at(j) == ',':
		end = j + 1
		for end < len(doc) && (at(end) == ' ' || at(end) == '\t' || at(end) == '\r') {
			end++
		}
	case i > 0:
		// The last member: the comma after the one before goes.
		c := obj.members[i-1].valueEnd
		for c < start && at(c) != ',' {
			c++
		}
		start = c
	}
	// A member on lines of its own takes them along.
	ls := start
	for ls > 0 && (at(ls-1) == ' ' || at(ls-1) == '\t') {
		ls--
	}
	if (ls == 0 || at(ls-1) == '\n') && end < len(doc) && at(end) == '\n' && at(start) != ',' {
		start, end = ls, end+1
	}
	return splice(doc, start, end, nil), nil
}

// addMember adds key with value as the last member of the object at path,
// creating that object (in its parent) when it is missing. The member
// follows the layout of the object: one line with its siblings' indent,
// or inline.
func addMember(doc []byte, path []string, key string, value []byte) ([]byte, error) {
	obj, err := locate(doc, path)
	if errors.Is(err, errNoObject) && len(path) > 0 {
		if doc, err = addMember(doc, path[:len(path)-1], path[len(path)-1], []byte("{}")); err != nil {
			return nil, err
		}
		obj, err = locate(doc, path)
	}
	if err != nil {
		return nil, err
	}
	if _, _, ok := obj.member(key); ok {
		return nil, fmt.Errorf("%s[%q] exists already", keyPath(path), key)
	}
	clean := stripJSONC(doc)
	shift := len(doc) - len(clean)
	at := func(off int) byte { return clean[off-shift] }
	k, err := json.Marshal(key)
	if err != nil {
		return nil, err
	}
	text := string(k) + ": " + string(value)
	last := obj.close - 1
	for last > obj.open && isBlank(at(last)) {
		last--
	}
	multiline := bytes.IndexByte(clean[obj.open-shift:obj.close-shift], '\n') >= 0
	sep := " "
	if multiline {
		sep = "\n" + memberIndent(doc, obj, at)
	}
	switch at(last) {
	case '{':
		if !multiline {
			sep = ""
		}
		return splice(doc, last+1, last+1, []byte(sep+text)), nil
	case ',': // JSONC's trailing comma: keep the style
		return splice(doc, last+1, last+1, []byte(sep+text+",")), nil
	default:
		return splice(doc, last+1, last+1, []byte(","+sep+text)), nil
	}
}

// memberIndent is the indent of the object's members: its last member's,
// else its closing brace's and two spaces.
func memberIndent(doc []byte, obj *object, at func(int) byte) string {
	lineIndent := func(off int) (string, bool) {
		s := off
		for s > 0 && (at(s-1) == ' ' || at(s-1) == '\t') {
			s--
		}
		return string(doc[s:off]), s == 0 || at(s-1) == '\n'
	}
	if n := len(obj.members); n > 0 {
		if ind, ok := lineIndent(obj.members[n-1].keyStart); ok {
			return ind
		}
	}
	if ind, ok := lineIndent(obj.close); ok {
		return ind + "  "
	}
	return "  "
}

func splice(doc []byte, start, end int, with []byte) []byte {
	out := make([]byte, 0, len(doc)-(end-start)+len(with))
	out = append(out, doc[:start]...)
	out = append(out, with...)
	return append(out, doc[end:]...)
}

// sameJSON reports two JSON (with comments) values that decode equal.
func sameJSON(a, b []byte) bool {
	va, errA := decodeJSONC(a)
	vb, errB := decodeJSONC(b)
	return errA == nil && errB == nil && reflect.DeepEqual(va, vb)
}

func decodeJSONC(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(stripJSONC(b)))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// entryRef is one server entry of a client file: the object holding it,
// its key, and the name discover gives it in an Origin.
type entryRef struct {
	container []string
	key       string
	entry     string
}

// entries lists the server entries of a client file (key as in
// clientSources), in the file's order. ~/.claude.json runs to megabytes
// of history: each project is read from its own bytes, not the file again.
func entries(doc []byte, key string) ([]entryRef, error) {
	list := func(obj *object, container []string) []entryRef {
		var out []entryRef
		for _, m := range obj.members {
			out = append(out, entryRef{container: container, key: m.key, entry: entryName(container, m.key)})
		}
		return out
	}
	top := []string{key}
	if key == "claude.json" {
		top = []string{"mcpServers"}
	}
	var out []entryRef
	switch obj, err := locate(doc, top); {
	case err == nil:
		out = list(obj, top)
	case !errors.Is(err, errNoObject):
		return nil, err
	}
	if key != "claude.json" {
		return out, nil
	}
	projects, err := locate(doc, []string{"projects"})
	if errors.Is(err, errNoObject) {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	for _, p := range projects.members {
		// A project that is not an object, or has no servers, has no
		// entries for discover either.
		if obj, err := locate(doc[p.valueStart:p.valueEnd], []string{"mcpServers"}); err == nil {
			out = append(out, list(obj, []string{"projects", p.key, "mcpServers"})...)
		}
	}
	return out, nil
}

// entryName spells an entry as discover's origins do.
func entryName(container []string, name string) string {
	if len(container) == 3 { // projects, dir, mcpServers
		return fmt.Sprintf("projects[%q].mcpServers[%q]", container[1], name)
	}
	return fmt.Sprintf("%s[%q]", container[0], name)
}

// hasComment reports a comment in a value's bytes: its stripJSONC form
// differs elsewhere than at a dropped trailing comma, whose loss is
// harmless.
func hasComment(orig []byte) bool {
	clean := stripJSONC(orig)
	if len(clean) != len(orig) {
		return true
	}
	for i := range orig {
		if orig[i] != clean[i] && orig[i] != ',' {
			return true
		}
	}
	return false
}
