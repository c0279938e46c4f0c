package proxy

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/rugwatch/rugwatch/mcpclient"
	"github.com/rugwatch/rugwatch/signatures"
)

// maxParamsBytes bounds one message's params or result from the client.
const maxParamsBytes = 16 << 20

// strictJSON is the one gate every params or result a client sends passes
// before the proxy reads it: a duplicate member, or two member names equal
// once case is folded, is refused as hostile (the proxy would read one,
// the server the other: `{"name":"get-env","NAME":"echo"}` checked as echo
// and run as get-env), and what goes on upstream is what was checked,
// decoded and encoded again, never the bytes as they came.
//
// checked says the whole message raw came in was checked for members
// already (a membersChecked connection): the walk is not run again.
func strictJSON(raw json.RawMessage, checked bool) (json.RawMessage, error) {
	if len(raw) == 0 {
		return raw, nil
	}
	if !checked {
		if err := checkMembers(raw); err != nil {
			return nil, err
		}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber() // numbers travel as written: no float64 rounding
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("hostile request: %w", err)
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(out.Bytes(), []byte("\n")), nil
}

// checkMembers is the member check of strictJSON, for a whole message.
func checkMembers(raw []byte) error {
	if err := signatures.CheckMembers(raw, signatures.Limits{MaxBytes: maxParamsBytes, MaxStringBytes: maxParamsBytes}); err != nil {
		return fmt.Errorf("hostile request: %w", err)
	}
	return nil
}

// membersChecked is a client connection that runs checkMembers over each
// message whole before handing it on (httpConn): its params and results
// are not walked again, only decoded and encoded again.
type membersChecked interface{ membersChecked() }

// callParams reads tools/call params by their exact member names, as the
// server will (encoding/json into a struct would match "NAME" too).
//
// raw has passed strictJSON, so it is JSON: its members are sliced out,
// not decoded into a map.
func callParams(raw json.RawMessage) (name string, args json.RawMessage, err error) {
	var nameRaw []byte
	err = mcpclient.Members(raw, func(member, v []byte) error {
		switch string(member) {
		case "name":
			nameRaw = v
		case "arguments":
			args = v
		}
		return nil
	})
	if err != nil {
		return "", nil, fmt.Errorf("params must be an object: %w", err)
	}
	if err := json.Unmarshal(nameRaw, &name); err != nil || name == "" {
		return "", nil, fmt.Errorf("params.name must be a non-empty string")
	}
	return name, args, nil
}
