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

// ListingCapabilities are the names of MonitorCapabilities: the client
// capabilities a server may list tools by, as far as a poll asks.
func ListingCapabilities() []string {
	return capabilityNames(json.RawMessage(MonitorCapabilities))
}

// partial reports whether declared falls short of what a poll declares
// anywhere (MonitorCapabilities, member by member, down to elicitation's
// form and url): the server may then keep tools from the session that it
// shows the monitor. A member declared as anything but an object (false,
// 0, "") declares nothing.
func partial(declared json.RawMessage) bool {
	var want map[string]any
	var got any
	if json.Unmarshal(json.RawMessage(MonitorCapabilities), &want) != nil || json.Unmarshal(declared, &got) != nil {
		return true
	}
	return !covers(got, want)
}

// covers reports whether got, an object, holds every object member of
// want, each covering want's in turn. Flags (roots.listChanged) are not
// capabilities a server lists by, and are not asked for.
func covers(got, want any) bool {
	g, ok := got.(map[string]any)
	if !ok {
		return false
	}
	for k, wv := range want.(map[string]any) {
		if _, isObject := wv.(map[string]any); !isObject {
			continue
		}
		if gv, ok := g[k]; !ok || !covers(gv, wv) {
			return false
		}
	}
	return true
}
