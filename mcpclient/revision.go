package mcpclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/rugwatch/rugwatch/signatures"
	"github.com/rugwatch/rugwatch/visible"
)

// StatelessVersion is the stateless revision (SEP-2575): no handshake,
// server/discover for versions and capabilities, the per-request _meta
// keys, and change notifications only on a subscriptions/listen request.
const StatelessVersion = "2026-07-28"

// speaksHandshake reports whether v is a handshake-era revision rugwatch
// reads (it asks for ProtocolVersion; a server may answer an older one).
func speaksHandshake(v string) bool {
	switch v {
	case "2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05":
		return true
	}
	return false
}

// isRevision reports whether v has the form of a revision, YYYY-MM-DD,
// so that comparing two as strings orders them by date.
func isRevision(v string) bool {
	if len(v) != 10 || v[4] != '-' || v[7] != '-' {
		return false
	}
	for i, c := range []byte(v) {
		if i != 4 && i != 7 && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// era is which revisions a dial may settle on.
type era int

// errRedial says the connection died while server/discover was pending.
var errRedial = errors.New("the server closed the connection on server/discover")

// RevisionError says the server and rugwatch share no revision the server
// actually serves: it answered initialize with a version its own
// server/discover does not list (the go-sdk answers an excluded version
// with 2025-11-25 "so that the client disconnects"), with a stateless
// revision, or with one rugwatch does not know. Such a session is
// half-open: listing through it would record what no client of the
// server's real revision sees, so the poll fails instead.
type RevisionError struct {
	Answered string   // the initialize answer, made safe; "" if not reached
	Offered  []string // server/discover's supportedVersions, made safe
	Reason   string
}

func (e *RevisionError) Error() string { return "protocol revision: " + e.Reason }

// negotiate settles the session's revision.
func (s *Session) negotiate(ctx context.Context, want era) error {
	if want == eraHandshake || s.target.Transport == TransportSSE {
		if want == eraStateless {
			return &RevisionError{Reason: "the legacy HTTP+SSE transport carries only the handshake era, not " + StatelessVersion}
		}
		// SSE cannot ask server/discover first (a go-sdk server would
		// then refuse initialize as a duplicate); Poll asks afterwards.
		s.probe = s.target.Transport == TransportSSE && want == eraAuto
		return s.initialize(ctx, nil)
	}
	d, err := s.discover(ctx)
	if err == nil && slices.Contains(d.versions, StatelessVersion) {
		s.adopt(d)
		return nil
	}
	if ctx.Err() != nil {
		return s.wrapErr("discovering the server's revisions", ctx.Err())
	}
	var le *LimitError
	var he *HostileError
	if errors.As(err, &le) || errors.As(err, &he) {
		// A hostile answer fails the poll; falling back would let a
		// server pick the era rugwatch watches by sending garbage.
		return s.wrapErr("discovering the server's revisions", err)
	}
	var offered []string
	if err == nil {
		offered = d.versions
	} else {
		offered = s.offeredIn(err)
	}
	if want == eraStateless {
		why := "server/discover failed"
		if err == nil {
			why = "server/discover lists " + listText(offered)
		}
		return &RevisionError{Offered: offered, Reason: fmt.Sprintf("the server does not serve %s here: %s", StatelessVersion, why)}
	}
	select {
	case <-s.done:
		return errRedial
	default:
	}
	s.headerVersion("") // initialize carries none: the revision is what it settles
	return s.initialize(ctx, offered)
}

// discovery is a validated server/discover result.
type discovery struct {
	versions     []string // nil when the result had no supportedVersions
	listChanged  bool
	instructions *string
	serverInfo   json.RawMessage
	raw          json.RawMessage
}

// discoverWait bounds server/discover inside the dial's own bound: half of
// what is left, at most maxDiscoverWait, so a handshake-era server that
// ignores the unknown method still leaves time for initialize.
func discoverWait(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return min(time.Until(dl)/2, maxDiscoverWait)
	}
	return maxDiscoverWait
}

// discover asks server/discover as a 2026-07-28 client, bounded by
// discoverWait (from when a stdio server started talking, startwait.go)
// and the session's limits.
func (s *Session) discover(ctx context.Context) (*discovery, error) {
	p, err := json.Marshal(map[string]json.RawMessage{"_meta": s.meta(StatelessVersion)})
	if err != nil {
		return nil, err
	}
	s.headerVersion(StatelessVersion)
	raw, err := s.askDiscover(ctx, p)
	if err != nil {
		return nil, err
	}
	lim := s.opts.Limits
	// Strict, like initialize: a duplicate key or invalid UTF-8 anywhere
	// in it is refused, not read one way here and another by a client.
	if _, err := signatures.Canonical(raw, signatures.Limits{MaxDepth: lim.MaxDepth,
		MaxStringBytes: lim.MaxStringBytes, MaxBytes: int(lim.MaxResponseBytes)}); err != nil {
		return nil, classify("server/discover result", err)
	}
	var res struct {
		SupportedVersions *[]string `json:"supportedVersions"`
		Capabilities      struct {
			Tools *struct {
				ListChanged bool `json:"listChanged"`
			} `json:"tools"`
		} `json:"capabilities"`
		Instructions *string                    `json:"instructions"`
		Meta         map[string]json.RawMessage `json:"_meta"`
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		return nil, &HostileError{Reason: "server/discover result is not a discover result: " + s.serverText(err.Error(), MaxServerText)}
	}
	d := &discovery{raw: raw, instructions: res.Instructions}
	if res.SupportedVersions != nil {
		if d.versions, err = s.versionList(*res.SupportedVersions); err != nil {
			return nil, err
		}
	}
	d.listChanged = res.Capabilities.Tools != nil && res.Capabilities.Tools.ListChanged
	d.serverInfo = res.Meta[mcp.MetaKeyServerInfo]
	return d, nil
}

// versionList checks a server's list of revisions against the bounds and
// makes each safe to show.
func (s *Session) versionList(vs []string) ([]string, error) {
	if len(vs) > maxOffered {
		return nil, &HostileError{Reason: fmt.Sprintf("server/discover lists %d protocol versions (at most %d)", len(vs), maxOffered)}
	}
	out := make([]string, 0, len(vs))
	for _, v := range vs {
		if len(v) > maxVersionBytes {
			return nil, &HostileError{Reason: fmt.Sprintf("server/discover lists a protocol version of %d bytes", len(v))}
		}
		out = append(out, v)
	}
	return out, nil
}

// offeredIn reads the supported versions an UnsupportedProtocolVersion
// error carries; nil when err is anything else or they break the bounds.
func (s *Session) offeredIn(err error) []string {
	var rpcErr *rpcError
	var we *jsonrpc.Error
	if !errors.As(err, &rpcErr) || !errors.As(rpcErr.err, &we) || we.Code != codeUnsupported || len(we.Data) == 0 {
		return nil
	}
	var data mcp.UnsupportedProtocolVersionData
	if len(we.Data) > 64<<10 || json.Unmarshal(we.Data, &data) != nil || data.Supported == nil {
		return nil
	}
	vs, verr := s.versionList(data.Supported)
	if verr != nil {
		return nil
	}
	return vs
}

// adopt takes a discover result that offers StatelessVersion.
func (s *Session) adopt(d *discovery) {
	s.stateless = true
	s.Init = InitializeInfo{
		ProtocolVersion: StatelessVersion,
		ServerInfo:      d.serverInfo,
		Instructions:    d.instructions,
		ListChanged:     d.listChanged,
		Raw:             d.raw,
		Offered:         d.versions,
	}
}

// checkAnswered refuses a handshake whose answered revision the server
// cannot serve (see RevisionError).
func (s *Session) checkAnswered(v string, offered []string) error {
	safe := `"` + s.serverText(v, maxVersionBytes) + `"`
	switch {
	case isRevision(v) && v >= StatelessVersion:
		return &RevisionError{Answered: safe, Offered: offered, Reason: fmt.Sprintf(
			"the server answered a handshake-era initialize with %s, a stateless revision, which has no handshake; "+
				"treated as a %s server that did not answer server/discover", safe, safe)}
	case !speaksHandshake(v):
		return &RevisionError{Answered: safe, Offered: offered, Reason: fmt.Sprintf(
			"the server answered initialize with %s, a revision rugwatch does not speak", safe)}
	case offered != nil && !slices.Contains(offered, v):
		return &RevisionError{Answered: safe, Offered: offered, Reason: fmt.Sprintf(
			"the server answered initialize with %s, but its server/discover lists %s here: it answers that way so that "+
				"the client disconnects, and is treated as a server of %s; rugwatch does not list through the half-open session",
			safe, listText(offered), listText(offered))}
	}
	return nil
}

// probeRevision is checkAnswered for a handshake already made without
// discovery first (SSE): after the listing, server/discover is asked once;
// a server whose answer does not list the revision it answered initialize
// with is that other revision's server. A server that does not know the
// method (every handshake-era server) passes.
func (s *Session) probeRevision(ctx context.Context, l *Listing) error {
	d, err := s.discover(ctx)
	if err != nil || d.versions == nil {
		var le *LimitError
		var he *HostileError
		if errors.As(err, &le) || errors.As(err, &he) {
			return err
		}
		return nil
	}
	l.Offered = d.versions
	if slices.Contains(d.versions, l.ProtocolVersion) {
		return nil
	}
	return &RevisionError{Answered: l.ProtocolVersion, Offered: d.versions, Reason: fmt.Sprintf(
		"the server answered initialize with %s, but its server/discover lists %s: it answers that way so that the "+
			"client disconnects, and is treated as a server of %s, which this transport cannot speak; the listing is not taken",
		l.ProtocolVersion, listText(d.versions), listText(d.versions))}
}

// listText shows a server's version list, each entry made safe.
func listText(vs []string) string {
	if len(vs) == 0 {
		return "no revision"
	}
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = visible.Bounded(v, maxVersionBytes)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// meta is the per-request _meta of SEP-2575 for revision v.
func (s *Session) meta(v string) json.RawMessage {
	caps := s.opts.capabilities()
	ver, _ := json.Marshal(v)
	info, _ := json.Marshal(map[string]string{"name": s.opts.ClientInfo.Name, "version": s.opts.ClientInfo.Version})
	keys := map[string]json.RawMessage{
		mcp.MetaKeyProtocolVersion:    ver,
		mcp.MetaKeyClientCapabilities: caps,
		mcp.MetaKeyClientInfo:         info,
	}
	if level, _ := s.logLevel.Load().(string); level != "" {
		//lint:ignore SA1019 deprecated in this era, yet how a handshake-era client's setLevel reaches a server that speaks only it.
		keys[mcp.MetaKeyLogLevel], _ = json.Marshal(level)
	}
	m, _ := json.Marshal(keys)
	return m
}

// SetLogLevel is logging/setLevel in the stateless era, where the method
// is gone and the level travels in each request's _meta: the proxy
// translates its handshake-era client's setLevel to it.
func (s *Session) SetLogLevel(level string) { s.logLevel.Store(level) }

// withMeta adds the per-request _meta keys to a request's params, keeping
// every other member, and every other key of a _meta they carry, as it
// came (the proxy forwards its client's params). The three keys are
// rugwatch's: upstream, the revision is the one rugwatch negotiated.
func (s *Session) withMeta(p json.RawMessage) (json.RawMessage, error) {
	fields := map[string]json.RawMessage{}
	if t := bytes.TrimSpace(p); len(t) > 0 && !bytes.Equal(t, []byte("null")) {
		if err := json.Unmarshal(t, &fields); err != nil {
			return nil, errors.New("params are not a JSON object, so they cannot carry _meta")
		}
	}
	var ours map[string]json.RawMessage
	_ = json.Unmarshal(s.meta(s.Init.ProtocolVersion), &ours)
	meta := map[string]json.RawMessage{}
	if m := bytes.TrimSpace(fields["_meta"]); len(m) > 0 && !bytes.Equal(m, []byte("null")) {
		if err := json.Unmarshal(m, &meta); err != nil {
			return nil, errors.New("params._meta is not a JSON object")
		}
	}
	for k, v := range ours {
		meta[k] = v
	}
	var err error
	if fields["_meta"], err = json.Marshal(meta); err != nil {
		return nil, err
	}
	return json.Marshal(fields)
}

// ownNotification reports whether a change notification belongs to this
// session's own subscriptions/listen: in the stateless era the server
// stamps each with the listen's id, and one stamped with another id (a
// listen the proxy forwarded for its client) is not rugwatch's to act on.
// An unstamped one counts: a re-check is paced, never harmful.
func (s *Session) ownNotification(p json.RawMessage) bool {
	if !s.stateless {
		return true
	}
	var v struct {
		Meta map[string]json.RawMessage `json:"_meta"`
	}
	if json.Unmarshal(p, &v) != nil {
		return true
	}
	id, ok := v.Meta[mcp.MetaKeySubscriptionID]
	if !ok {
		return true
	}
	n := s.listenID.Load()
	return n != 0 && string(bytes.TrimSpace(id)) == strconv.FormatInt(n, 10)
}

// listen opens this session's subscriptions/listen for toolsListChanged
// and waits, at most within, for the server's
// notifications/subscriptions/acknowledged. Change notifications then
// arrive on Changed; the returned channel yields why the listen ended (a
// server that ends it gracefully ends the watch session too, which
// reconnects). The request lives until the session closes.
func (s *Session) listen(ctx context.Context, within time.Duration) (<-chan error, error) {
	n := s.nextID.Add(1)
	s.listenID.Store(n)
	p, _ := json.Marshal(map[string]any{"notifications": map[string]bool{"toolsListChanged": true}})
	ended := make(chan error, 1)
	// The request's context ends with the session, or when the listen is
	// given up on: over HTTP that is what closes the stream, even one
	// whose server never sent its response headers.
	lctx, stop := context.WithCancel(ctx)
	go func() {
		select {
		case <-s.done:
		case <-lctx.Done():
		}
		stop()
	}()
	go func() {
		defer stop()
		_, err := s.callID(lctx, n, "subscriptions/listen", p)
		var rpcErr *rpcError
		switch {
		case err == nil:
			err = errors.New("the server ended subscriptions/listen")
		case errors.As(err, &rpcErr):
			err = s.serverError("subscriptions/listen", rpcErr.err)
		}
		ended <- s.bound(err)
	}()
	t := time.NewTimer(within)
	defer t.Stop()
	var err error
	select {
	case raw := <-s.acks:
		if err = s.checkAck(raw); err == nil {
			return ended, nil
		}
	case lerr := <-ended:
		err = fmt.Errorf("opening subscriptions/listen: %w", lerr)
	case <-t.C:
		err = fmt.Errorf("opening subscriptions/listen: no notifications/subscriptions/acknowledged within %v", within)
	case <-ctx.Done():
		err = ctx.Err()
	}
	stop()
	return nil, err
}

// checkAck reads the acknowledgement: bounded and strict like any result,
// and it must grant toolsListChanged, or the listen would watch nothing.
func (s *Session) checkAck(raw json.RawMessage) error {
	lim := s.opts.Limits
	if _, err := signatures.Canonical(raw, signatures.Limits{MaxDepth: lim.MaxDepth,
		MaxStringBytes: lim.MaxStringBytes, MaxBytes: int(lim.MaxResponseBytes)}); err != nil {
		return classify("notifications/subscriptions/acknowledged", err)
	}
	var ack struct {
		Notifications struct {
			ToolsListChanged bool `json:"toolsListChanged"`
		} `json:"notifications"`
	}
	if err := json.Unmarshal(raw, &ack); err != nil {
		return &HostileError{Reason: "notifications/subscriptions/acknowledged is not an acknowledgement"}
	}
	if !ack.Notifications.ToolsListChanged {
		return errors.New("the server acknowledged subscriptions/listen without toolsListChanged")
	}
	return nil
}

const (
	eraAuto      era = iota // server/discover first, the handshake otherwise
	eraHandshake            // initialize only (SSE, and revision_check's second listing)
	eraStateless            // 2026-07-28 or fail
)

// Bounds of what server/discover may list: a handful of dated revisions.
const (
	maxOffered       = 32
	maxVersionBytes  = 64
	maxDiscoverWait  = 10 * time.Second
	codeUnsupported  = -32022 // CodeUnsupportedProtocolVersion
	maxCacheScopeLen = 64
)
