package monitor

import (
	"encoding/json"

	"github.com/rugwatch/rugwatch/mcpclient"
	"github.com/rugwatch/rugwatch/store"
)

// adoptLaunchRevision pins the revision of a stdio server whose launch
// identity was pinned before rugwatch recorded revisions: the first
// revision seen joins the pin, so an upgrade of rugwatch is not launch
// drift of every server. A pin that names a revision is never touched.
func adoptLaunchRevision(prev *store.ServerRecord, l *mcpclient.Listing) {
	if prev == nil || l == nil || l.Launch == nil || l.Launch.ProtocolVersion == "" {
		return
	}
	adopt := func(raw json.RawMessage) json.RawMessage {
		var fields map[string]json.RawMessage
		var pinned mcpclient.Launch
		if len(raw) == 0 || json.Unmarshal(raw, &fields) != nil || fields["protocol_version"] != nil || json.Unmarshal(raw, &pinned) != nil {
			return raw
		}
		pinned.ProtocolVersion = l.Launch.ProtocolVersion
		out, err := json.Marshal(pinned)
		if err != nil {
			return raw
		}
		return out
	}
	prev.LaunchPinned = adopt(prev.LaunchPinned)
	prev.Launch = adopt(prev.Launch)
}
