package mcpclient

import (
	"encoding/json"
	"slices"
)

// MonitorCapabilities are the client capabilities a poll declares: every
// one a client can have. Servers list some tools only to clients that can
// sample, elicit or share roots (server-everything does), and a tool kept
// from the watcher is exactly where a rug pull would hide; so the monitor
// asks as the most capable client would and sees the whole set. It acts on
// none of them: roots/list is answered with no roots, sampling and
// elicitation are refused (Session.answer).
const MonitorCapabilities = `{"roots":{"listChanged":true},"sampling":{},"elicitation":{"form":{},"url":{}}}`

// capabilities is what the session declares: the proxy's client's, else
// the monitor's.
func (o DialOptions) capabilities() json.RawMessage {
	if len(o.Capabilities) > 0 {
		return o.Capabilities
	}
	return json.RawMessage(MonitorCapabilities)
}

// capabilityNames are the top-level names of declared capabilities,
// sorted; nil when they are not a JSON object.
func capabilityNames(raw json.RawMessage) []string {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return nil
	}
	out := make([]string, 0, len(m))
	for k, v := range m {
		if string(v) != "null" {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// partial reports whether declared lacks a capability a poll declares:
// the server may then keep tools from the session that it shows the
// monitor.
func partial(declared json.RawMessage) bool {
	names := capabilityNames(declared)
	for _, c := range capabilityNames(json.RawMessage(MonitorCapabilities)) {
		if !slices.Contains(names, c) {
			return true
		}
	}
	return false
}
