package mcpclient

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// pageMembers are the names of the members readPage reads.
var pageMembers = []string{"tools", "nextCursor", "resultType", "ttlMs", "cacheScope"}

// pageFields are the members of a tools/list result a listing reads.
type pageFields struct {
	Tools      *[]json.RawMessage
	NextCursor *string
	ResultType *string
	TTLMs      json.RawMessage
	CacheScope json.RawMessage
}

// readPage is json.Unmarshal(raw, &page) for a pageFields with the
// members' JSON names, which was a quarter of the CPU of a poll whose
// listing had not changed: the tools are sliced out of raw (not copied,
// not decoded) and only the small members go through encoding/json.
// Names match as encoding/json matches them, exactly or case-folded, a
// later member overwriting an earlier one.
//
// It checks only the structure it walks (strings, nesting, commas), not
// every byte inside a tool: the pages of a listing whose fingerprint is
// new are read whole by checkPageKeys, which refuses any that are not
// JSON, before a tool is looked at, and a fingerprint that is not new is
// the hash of bytes that were read whole when first recorded.
func readPage(raw []byte) (pageFields, error) {
	var p pageFields
	i := skipSpace(raw, 0)
	if bytes.HasPrefix(raw[i:], []byte("null")) && skipSpace(raw, i+4) == len(raw) {
		return p, nil // as encoding/json: nothing set
	}
	err := Members(raw, func(name, v []byte) error { return p.set(string(name), v) })
	return p, err
}

// Members calls visit with each member of the JSON object raw: its name,
// unescaped, and its value's bytes, which alias raw. It reads without a
// decoder, checking only the structure it walks (strings, nesting,
// commas, nothing after the object), not every byte of a value: the
// caller has checked raw is JSON, or reads only what it must. A member
// repeated is visited twice, so a reader that keeps the last reads as
// encoding/json reads into a map.
func Members(raw []byte, visit func(name, value []byte) error) error {
	i := skipSpace(raw, 0)
	if i >= len(raw) || raw[i] != '{' {
		return errors.New("not an object")
	}
	i = skipSpace(raw, i+1)
	if i < len(raw) && raw[i] == '}' {
		i++
	} else {
		for {
			if i >= len(raw) || raw[i] != '"' {
				return errors.New("an object member has no string name")
			}
			end, err := skipString(raw, i)
			if err != nil {
				return err
			}
			name, err := memberName(raw[i:end])
			if err != nil {
				return err
			}
			i = skipSpace(raw, end)
			if i >= len(raw) || raw[i] != ':' {
				return errors.New("a member name is not followed by ':'")
			}
			start := skipSpace(raw, i+1)
			if end, err = skipValue(raw, start); err != nil {
				return err
			}
			if err := visit(name, raw[start:end]); err != nil {
				return err
			}
			i = skipSpace(raw, end)
			if i < len(raw) && raw[i] == ',' {
				i = skipSpace(raw, i+1)
				continue
			}
			if i < len(raw) && raw[i] == '}' {
				i++
				break
			}
			return errors.New("object members are not separated by ','")
		}
	}
	if skipSpace(raw, i) != len(raw) {
		return errors.New("text after the object")
	}
	return nil
}

// set assigns the member name (decoded) its value's bytes, as
// encoding/json would into the struct.
func (p *pageFields) set(name string, v []byte) error {
	switch {
	case strings.EqualFold(name, "tools"):
		if string(v) == "null" {
			p.Tools = nil
			return nil
		}
		tools, err := splitArray(v)
		if err != nil {
			return fmt.Errorf("member %q: %w", "tools", err)
		}
		p.Tools = &tools
	case strings.EqualFold(name, "nextCursor"):
		return json.Unmarshal(v, &p.NextCursor)
	case strings.EqualFold(name, "resultType"):
		return json.Unmarshal(v, &p.ResultType)
	case strings.EqualFold(name, "ttlMs"):
		p.TTLMs = v
	case strings.EqualFold(name, "cacheScope"):
		p.CacheScope = v
	}
	return nil
}

// memberName decodes a quoted member name; only one with escapes costs
// a decode.
func memberName(q []byte) ([]byte, error) {
	if bytes.IndexByte(q, '\\') < 0 {
		return q[1 : len(q)-1], nil
	}
	var s string
	if err := json.Unmarshal(q, &s); err != nil {
		return nil, fmt.Errorf("member name: %w", err)
	}
	return []byte(s), nil
}

// splitArray returns the elements of the JSON array v, each its exact
// bytes, sharing v's memory.
func splitArray(v []byte) ([]json.RawMessage, error) {
	if len(v) == 0 || v[0] != '[' {
		return nil, errors.New("not an array")
	}
	var out []json.RawMessage
	i := skipSpace(v, 1)
	if i < len(v) && v[i] == ']' {
		return []json.RawMessage{}, nil
	}
	for {
		end, err := skipValue(v, i)
		if err != nil {
			return nil, err
		}
		out = append(out, v[i:end:end])
		i = skipSpace(v, end)
		if i < len(v) && v[i] == ',' {
			i = skipSpace(v, i+1)
			continue
		}
		if i < len(v) && v[i] == ']' {
			return out, nil
		}
		return nil, errors.New("array elements are not separated by ','")
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the end of the string starting at b[i] == '"'.
func skipString(b []byte, i int) (int, error) {
	for i++; i < len(b); {
		// Most of a listing's bytes are inside strings: find the next
		// quote at memchr speed, then see whether a backslash escapes it.
		q := bytes.IndexByte(b[i:], '"')
		if q < 0 {
			break
		}
		end := i + q
		n := 0
		for j := end - 1; j >= i && b[j] == '\\'; j-- {
			n++
		}
		if n%2 == 0 {
			return end + 1, nil
		}
		i = end + 1
	}
	return 0, errors.New("unterminated string")
}

// skipValue returns the end of the value starting at b[i]: a string, an
// object or array with everything nested in it, or a number or literal.
func skipValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errors.New("a value is missing")
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				end, err := skipString(b, i)
				if err != nil {
					return 0, err
				}
				i = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1, nil
				}
			}
		}
		return 0, errors.New("unterminated object or array")
	case ',', ':', '}', ']':
		return 0, errors.New("a value is missing")
	}
	j := i
	for j < len(b) && bytes.IndexByte([]byte(" \t\n\r,:{}[]\""), b[j]) < 0 {
		j++
	}
	return j, nil
}
