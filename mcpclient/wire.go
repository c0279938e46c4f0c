package mcpclient

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
)

// maxMessageDepth bounds the nesting of one JSON-RPC message, as the
// go-sdk's own decoder does: deeper is hostile, not an honest result.
const maxMessageDepth = 1000

// DecodeMessage reads one JSON-RPC message from bytes a peer sent, the
// server's answers here and the proxy's clients' requests there. Members
// are read by their exact names, never case-folded (`"METHOD"` is not the
// method), the version must be "2.0", and an id is a string or an integer
// within ±2^53 (MessageID). It does not look for duplicate members: the
// proxy runs that check first on what its clients send.
//
// It replaces jsonrpc.DecodeMessage, whose decoder allocates a 32 KiB
// buffer on every call: on a proxied call that was most of the bytes
// allocated, and so most of the collector's work.
func DecodeMessage(body []byte) (jsonrpc.Message, error) {
	if err := checkDepth(body, maxMessageDepth); err != nil {
		return nil, err
	}
	// One validating scan, then the members sliced out of body (they
	// alias it) rather than decoded into a map: a 64 KiB result is
	// scanned once, not three times and copied.
	if !json.Valid(body) {
		return nil, errors.New("the body is not a JSON-RPC message (a JSON object)")
	}
	var version, idRaw, method, params, result, errRaw []byte
	hasMethod := false
	err := Members(body, func(name, v []byte) error {
		switch string(name) { // exact names; a repeated member: the last, as into a map
		case "jsonrpc":
			version = v
		case "id":
			idRaw = v
		case "method":
			method, hasMethod = v, true
		case "params":
			params = v
		case "result":
			result = v
		case "error":
			errRaw = v
		}
		return nil
	})
	if err != nil {
		return nil, errors.New("the body is not a JSON-RPC message (a JSON object)")
	}
	if string(version) != `"2.0"` {
		var v string
		if json.Unmarshal(version, &v) != nil || v != "2.0" {
			return nil, errors.New(`the message lacks "jsonrpc": "2.0"`)
		}
	}
	id, err := MessageID(idRaw)
	if err != nil {
		return nil, err
	}
	if hasMethod {
		var name string
		if json.Unmarshal(method, &name) != nil || name == "" {
			return nil, errors.New("the method must be a non-empty string")
		}
		return &jsonrpc.Request{ID: id, Method: name, Params: params}, nil
	}
	if !id.IsValid() {
		return nil, errors.New("a message with no method must be a response, with an id")
	}
	resp := &jsonrpc.Response{ID: id, Result: result}
	if len(errRaw) > 0 && string(errRaw) != "null" { // null: none, as the SDK reads it
		var e jsonrpc.Error
		if err := json.Unmarshal(errRaw, &e); err != nil {
			return nil, errors.New("the error of a response must be an object")
		}
		resp.Error, resp.Result = &e, nil
	} else if len(resp.Result) == 0 {
		return nil, errors.New("a response must carry a result or an error")
	}
	return resp, nil
}

// MessageID reads a JSON-RPC id: absent or null (a notification), a
// string, or an integer.
func MessageID(raw json.RawMessage) (jsonrpc.ID, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return jsonrpc.ID{}, nil
	}
	if n, err := strconv.ParseInt(string(raw), 10, 64); err == nil && n <= 1<<53 && n >= -(1<<53) {
		return jsonrpc.MakeID(float64(n)) // the common case, read without a decoder
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil {
		return jsonrpc.ID{}, errors.New("unreadable id")
	}
	switch v := v.(type) {
	case string:
		return jsonrpc.MakeID(v)
	case json.Number:
		n, err := v.Int64()
		if err != nil {
			return jsonrpc.ID{}, errors.New("the id must be a string or an integer")
		}
		// jsonrpc.MakeID takes an integer id as a float64 (as a decoder
		// gives it): beyond 2^53 it would come back as another number,
		// answering no request.
		if n > 1<<53 || n < -(1<<53) {
			return jsonrpc.ID{}, errors.New("the id must be a string or an integer within ±2^53")
		}
		return jsonrpc.MakeID(float64(n))
	}
	return jsonrpc.ID{}, errors.New("the id must be a string or an integer")
}

// checkDepth refuses JSON nested deeper than max. Strings are skipped
// whole (a bracket inside one is text); the JSON itself is validated by
// the decoder after.
func checkDepth(b []byte, max int) error {
	depth := 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '"':
			// To the closing quote: one not preceded by an odd run of
			// backslashes.
			for i++; i < len(b); i++ {
				j := bytes.IndexByte(b[i:], '"')
				if j < 0 {
					return nil // unterminated: the decoder says so
				}
				i += j
				k := i - 1
				for k >= 0 && b[k] == '\\' {
					k--
				}
				if (i-1-k)%2 == 0 {
					break
				}
			}
		case '{', '[':
			if depth++; depth > max {
				return errors.New("the message is nested deeper than " + strconv.Itoa(max) + " levels")
			}
		case '}', ']':
			depth--
		}
	}
	return nil
}
