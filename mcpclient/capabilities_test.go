package mcpclient

import (
	"encoding/json"
	"testing"
)

// A listing is whole only under every capability a poll declares, member
// by member: a top-level name declared as false, 0 or "" declares nothing,
// and elicitation by form alone falls short of form and URL.
func TestPartialIsMemberByMember(t *testing.T) {
	for caps, want := range map[string]bool{
		MonitorCapabilities: false,
		`{"roots":{"listChanged":true},"sampling":{},"elicitation":{"form":{},"url":{}},"experimental":{"x":1}}`: false,
		`{"roots":{},"sampling":{"tools":{}},"elicitation":{"form":{"applyDefaults":true},"url":{}}}`:            false,
		`{}`: true,
		`{"roots":false,"sampling":false,"elicitation":false}`:                           true,
		`{"roots":0,"sampling":"","elicitation":[]}`:                                     true,
		`{"roots":{"listChanged":true},"sampling":{},"elicitation":{"form":{}}}`:         true,
		`{"roots":{"listChanged":true},"sampling":{},"elicitation":{}}`:                  true,
		`{"roots":{"listChanged":true},"sampling":{},"elicitation":{"form":{},"url":1}}`: true,
		`not json`: true,
	} {
		if got := partial(json.RawMessage(caps)); got != want {
			t.Errorf("partial(%s) = %v, want %v", caps, got, want)
		}
	}
}
