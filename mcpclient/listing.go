package mcpclient

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/signatures"
	"github.com/rugwatch/rugwatch/visible"
)

// Tool is one tool definition as the server sent it.
type Tool struct {
	Name      string
	Raw       json.RawMessage // exactly the bytes the server sent
	Canonical json.RawMessage // RFC 8785 form of Raw
	Digest    rugwatch.Digest
}

// Listing is one complete, validated answer to tools/list.
type Listing struct {
	ProtocolVersion    string
	ServerInfo         json.RawMessage
	Instructions       *string
	InstructionsDigest rugwatch.Digest // empty when the server sent none
	Tools              []Tool          // sorted by name
	Pages              int
	Launch             *Launch         // stdio servers only
	Identity           *RemoteIdentity // http and sse servers only (identity.go)
	Warnings           []string
	Elapsed            time.Duration
	// StdoutNoise is what a stdio server wrote on stdout that is not
	// JSON-RPC, dropped unread (stdoutlines.go); nil when nothing was.
	// Findings reports it.
	StdoutNoise *StdoutNoise

	// Refused are the destinations the sandbox's egress path refused the
	// server during the poll.
	Refused []Refusal
	// Egress is where the server went through its egress path since the
	// last listing (egress.go); nil for a server that had none (remote,
	// unsandboxed, network none or host).
	Egress *EgressUse
	// RevisionChosen says rugwatch chose the session's revision (the
	// proxy speaks its clients' handshake era, PreferHandshake) rather
	// than negotiating the newest: the protocol_version of its launch and
	// remote identity measures nothing of the server, and the recorded
	// one stands.
	RevisionChosen bool
	// Sandboxed says a stdio server ran in the sandbox; SandboxNote says
	// why it did not (sandbox: off, or the kernel refused under auto).
	Sandboxed   bool
	SandboxNote string

	// Partial says the listing was taken under fewer client capabilities
	// than a poll declares (MonitorCapabilities): a proxy's for a client
	// that cannot sample, say. The server may have kept tools from it
	// that it shows the monitor, so a tool it lacks is not a tool removed.
	Partial bool

	// Offered is what the server's server/discover listed (each entry
	// bounded), nil when it answered none.
	Offered []string
	// Cache is the 2026-07-28 caching hint of the tools/list pages, nil
	// when no page carried one. It is the server's word to its clients,
	// kept to be shown: no digest covers it.
	Cache *CacheHint
	// Revisions holds one listing's tool digests per revision the server
	// offers, when the listing was taken by PollEachRevision (cloak.go).
	Revisions []RevisionListing

	// Fingerprint is the SHA-256 of everything a poll's outcome depends on
	// that the server sent or that ran: the exact bytes of every tools/list
	// page, the initialize answer's fields kept here, the launch identity,
	// the sandbox verdict, and the limits they were checked against.
	// Unchanged says the poll found it equal to DialOptions.Unchanged's and
	// skipped the per-tool work: Tools is empty, everything else is set.
	// The same bytes checked against the same limits pass the same checks,
	// so a listing refused once is refused again, and only a fingerprint
	// recorded after a listing passed them all can be matched.
	Fingerprint [32]byte
	Unchanged   bool
}

// CacheHint is what the pages of a listing said about caching it: the
// least ttlMs of any page (the listing is as fresh as its stalest page)
// and "private" if any page said so, else the scope the pages gave.
type CacheHint struct {
	TTLMs      *int64 `json:"ttl_ms,omitempty"`
	CacheScope string `json:"cache_scope,omitempty"`
}

// Tool returns the tool called name.
func (l *Listing) Tool(name string) (Tool, bool) {
	i := sort.Search(len(l.Tools), func(i int) bool { return l.Tools[i].Name >= name })
	if i < len(l.Tools) && l.Tools[i].Name == name {
		return l.Tools[i], true
	}
	return Tool{}, false
}

// HostileError marks a response rugwatch refuses to interpret.
type HostileError struct{ Reason string }

func (e *HostileError) Error() string { return "hostile server response: " + e.Reason }

// Poll connects to a target, lists every tool and disconnects. ctx bounds
// the whole poll, connect to last page; a stdio server's process group is
// gone when Poll returns.
func Poll(ctx context.Context, t Target, opts DialOptions) (*Listing, error) {
	return pollEra(ctx, t, opts, eraAuto)
}

// pollEra polls once and says which destinations the sandbox refused the
// server meanwhile: on the listing, or on the error of a poll that failed
// (often because of them).
func pollEra(ctx context.Context, t Target, opts DialOptions, want era) (*Listing, error) {
	t.Sandbox.refused = &refusals{}
	t.Sandbox.egress = &egressUse{}
	l, err := pollOnce(ctx, t, opts, want)
	if err != nil {
		if refused := t.Sandbox.refused.list(); len(refused) > 0 {
			return nil, &EgressRefusedError{Refused: refused, Err: err}
		}
		return nil, err
	}
	// What came after the listing (while the session ended) too.
	l.Refused = append(l.Refused, t.Sandbox.refused.take()...)
	if l.Egress != nil {
		l.Egress.merge(t.Sandbox.egress.take())
	}
	return l, nil
}

func pollOnce(ctx context.Context, t Target, opts DialOptions, want era) (*Listing, error) {
	start := time.Now()
	s, err := dial(ctx, t, opts, want)
	if err != nil {
		return nil, scrubErr(t, err)
	}
	defer s.Close()
	l, err := s.ListTools(ctx)
	if err != nil {
		return nil, scrubErr(t, s.bound(err))
	}
	if s.probe {
		if err := s.probeRevision(ctx, l); err != nil {
			return nil, scrubErr(t, s.bound(err))
		}
	}
	l.Elapsed = time.Since(start)
	return l, nil
}

// noteCache folds one page's ttlMs and cacheScope into l.Cache. They are
// hints: a malformed one is a warning, never a failed poll.
func (s *Session) noteCache(l *Listing, ttl, scope json.RawMessage) {
	if len(ttl) == 0 && len(scope) == 0 {
		return
	}
	if l.Cache == nil {
		l.Cache = &CacheHint{}
	}
	if len(ttl) > 0 && string(ttl) != "null" {
		n, err := strconv.ParseInt(string(ttl), 10, 64)
		if err != nil || n < 0 {
			l.Warnings = append(l.Warnings, fmt.Sprintf("page %d: ttlMs %s is not a non-negative integer; ignored", l.Pages, s.serverText(string(ttl), maxIDText)))
		} else if l.Cache.TTLMs == nil || n < *l.Cache.TTLMs {
			l.Cache.TTLMs = &n
		}
	}
	if len(scope) > 0 && string(scope) != "null" {
		var sc string
		if json.Unmarshal(scope, &sc) != nil || len(sc) > maxCacheScopeLen {
			l.Warnings = append(l.Warnings, fmt.Sprintf("page %d: cacheScope is not a short string; ignored", l.Pages))
		} else if sc == "private" || l.Cache.CacheScope == "" {
			l.Cache.CacheScope = visible.Bounded(sc, maxCacheScopeLen)
		}
	}
}

// describeLaunch fills the launch identity of a stdio session; a failure
// to hash is a warning, not a failed poll, but hashing past the poll's
// deadline fails the poll: a listing recorded without its launch identity
// because the hash ran out of time would let a swapped executable pass.
func (s *Session) describeLaunch(ctx context.Context, l *Listing) error {
	s.describeIdentity(l)
	if s.proc == nil {
		return nil
	}
	l.Sandboxed, l.SandboxNote = s.proc.sandboxed, s.proc.sandboxNote
	launch, err := launchOf(ctx, s.target, s.opts.Hashes, s.Init.ServerInfo)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("hashing the executable of the launch identity: %w", ctx.Err())
		}
		if s.target.Integrity != "" {
			// A pinned artifact must be confirmed; without a launch
			// identity nothing was.
			return fmt.Errorf("integrity %s cannot be confirmed: launch identity: %w", s.target.Integrity, err)
		}
		l.Warnings = append(l.Warnings, "launch identity: "+err.Error())
		return nil
	}
	// A server that moves revision serves its tools to another kind of
	// client: part of what runs, so it shows as launch drift.
	launch.ProtocolVersion = s.Init.ProtocolVersion
	l.Launch = launch
	l.RevisionChosen = s.opts.PreferHandshake
	return s.resolvePackage(ctx, l)
}

// ListTools fetches every page of tools/list over an open session.
func (s *Session) ListTools(ctx context.Context) (*Listing, error) {
	lim := s.opts.Limits
	slim := signatures.Limits{MaxDepth: lim.MaxDepth, MaxStringBytes: lim.MaxStringBytes, MaxBytes: int(lim.MaxResponseBytes)}
	l := &Listing{
		ProtocolVersion: s.Init.ProtocolVersion,
		ServerInfo:      s.Init.ServerInfo,
		Instructions:    s.Init.Instructions,
		Offered:         s.Init.Offered,
		Partial:         partial(s.opts.capabilities()),
	}
	if l.Instructions != nil {
		canon, err := signatures.InstructionsCanonical(*l.Instructions, slim)
		if err != nil {
			return nil, s.wrapErr("digesting instructions", err)
		}
		l.InstructionsDigest = signatures.DigestOf(canon)
	}
	var total int64
	seenCursor := map[string]bool{}
	fp := sha256.New()
	// The pages are read in full first, their bytes hashed as they come,
	// and each tool is checked and canonicalised after, only if the
	// fingerprint is not one the caller already recorded.
	type pageOfTools struct {
		raw     []byte
		tools   []json.RawMessage
		checked bool // read whole by checkPageKeys already
	}
	var pages []pageOfTools
	cursor := ""
	for {
		if l.Pages >= lim.MaxPages {
			return nil, &LimitError{Limit: "max_pages", Value: int64(lim.MaxPages)}
		}
		params := map[string]any{}
		if cursor != "" {
			params["cursor"] = cursor
		}
		raw, err := s.call(ctx, "tools/list", params)
		if err != nil {
			return nil, s.wrapErr(fmt.Sprintf("listing tools (page %d)", l.Pages+1), s.limitErr(err))
		}
		l.Pages++
		fmt.Fprintf(fp, "page %d\n", len(raw))
		fp.Write(raw)
		page, err := readPage(raw)
		if err != nil {
			return nil, &HostileError{Reason: fmt.Sprintf("page %d: result is not a tools/list result: %v", l.Pages, err)}
		}
		if page.Tools == nil {
			return nil, &HostileError{Reason: fmt.Sprintf("page %d: result has no tools array", l.Pages)}
		}
		if page.ResultType != nil && *page.ResultType != "complete" {
			// Only a complete result is a listing; an input_required one
			// asks the client for something a monitor never gives.
			return nil, &HostileError{Reason: fmt.Sprintf("page %d: resultType %s; a tools/list result must be complete",
				l.Pages, `"`+s.serverText(*page.ResultType, maxIDText)+`"`)}
		}
		s.noteCache(l, page.TTLMs, page.CacheScope)
		var inTools int64
		for _, tr := range *page.Tools {
			// Counted as the tools are read, as before, so a server
			// cannot make rugwatch hold more than the listing limit.
			inTools += int64(len(tr))
			if total += int64(len(tr)); total > lim.MaxListingBytes {
				return nil, &LimitError{Limit: "max_listing_bytes", Value: lim.MaxListingBytes}
			}
		}
		kept := pageOfTools{raw: raw, tools: *page.Tools}
		if int64(len(raw)) > 2*inTools+64<<10 {
			// Mostly not tools: padding outside "tools" would make a
			// listing hold max_pages whole responses. Such a page is read
			// whole now and only copies of its tools are kept.
			if err := checkPageKeys(raw, lim.MaxDepth); err != nil {
				return nil, &HostileError{Reason: fmt.Sprintf("page %d: %v", l.Pages, err)}
			}
			kept = pageOfTools{tools: copyTools(*page.Tools), checked: true}
		}
		pages = append(pages, kept)
		if page.NextCursor == nil || *page.NextCursor == "" {
			break
		}
		if seenCursor[*page.NextCursor] {
			// Ending the listing here would take what came so far for the
			// server's tools, and every tool behind the loop would read as
			// removed: a server could drop any tool from review by looping.
			// The poll fails instead, and the last good listing stands.
			return nil, &HostileError{Reason: fmt.Sprintf("page %d repeats the cursor %s of an earlier page; a listing that loops is never complete",
				l.Pages, `"`+s.serverText(*page.NextCursor, maxIDText)+`"`)}
		}
		seenCursor[*page.NextCursor] = true
		cursor = *page.NextCursor
	}
	if err := s.describeLaunch(ctx, l); err != nil {
		return nil, err
	}
	l.StdoutNoise = s.stdoutNoise()
	l.Refused = s.target.Sandbox.refused.take()
	s.noteEgress(l)
	l.Fingerprint = s.fingerprint(fp, l, lim)
	if s.opts.Unchanged != nil && s.opts.Unchanged(l.Fingerprint) {
		l.Unchanged = true
		return l, nil
	}
	pageOf := map[string]int{}
	names := map[string]rugwatch.Digest{}
	for n, pg := range pages {
		pageNo := n + 1
		// A duplicate "tools" or "nextCursor" key is refused, not read one
		// way when the model's client may read it another. Each tool is
		// then checked strictly on its own by signatures.Digest; hashing
		// the whole page first as well would double the cost of a poll.
		if !pg.checked {
			if err := checkPageKeys(pg.raw, lim.MaxDepth); err != nil {
				return nil, &HostileError{Reason: fmt.Sprintf("page %d: %v", pageNo, err)}
			}
		}
		for i, tr := range pg.tools {
			if len(l.Tools) >= lim.MaxTools {
				return nil, &LimitError{Limit: "max_tools", Value: int64(lim.MaxTools)}
			}
			var head struct {
				Name *string `json:"name"`
			}
			if err := json.Unmarshal(tr, &head); err != nil || head.Name == nil {
				return nil, &HostileError{Reason: fmt.Sprintf("page %d, tool %d: not an object with a string name", pageNo, i)}
			}
			name := *head.Name
			switch {
			case name == "":
				return nil, &HostileError{Reason: fmt.Sprintf("page %d, tool %d: empty name", pageNo, i)}
			case len(name) > lim.MaxNameBytes:
				return nil, &LimitError{Limit: "max_name_bytes", Value: int64(lim.MaxNameBytes)}
			}
			d, canon, err := signatures.Digest(tr, slim)
			if err != nil {
				return nil, classify(fmt.Sprintf("tool %q", name), err)
			}
			if prev, dup := names[name]; dup {
				// The same definition on a later page happens when the list
				// changes between pages (an offset cursor shifts); a server
				// looping on its cursor failed at the repeated cursor above.
				// Two different definitions under one name are another
				// matter: which one a client keeps is up to the client, so
				// rugwatch cannot pin either honestly.
				if prev != d || pageOf[name] == pageNo {
					return nil, &HostileError{Reason: fmt.Sprintf("tool %q listed twice", name)}
				}
				continue
			}
			names[name] = d
			pageOf[name] = pageNo
			l.Tools = append(l.Tools, Tool{Name: name, Raw: append(json.RawMessage(nil), tr...), Canonical: canon, Digest: d})
		}
	}
	sort.Slice(l.Tools, func(i, j int) bool { return l.Tools[i].Name < l.Tools[j].Name })
	return l, nil
}

// copyTools copies each tool's bytes out of the page they were sliced
// from, into one buffer.
func copyTools(tools []json.RawMessage) []json.RawMessage {
	n := 0
	for _, t := range tools {
		n += len(t)
	}
	buf := make([]byte, 0, n)
	out := make([]json.RawMessage, len(tools))
	for i, t := range tools {
		buf = append(buf, t...)
		out[i] = buf[len(buf)-len(t) : len(buf) : len(buf)]
	}
	return out
}

// fingerprint finishes a listing's Fingerprint: the pages hashed so far,
// then every other field of the listing a recorded poll depends on, and
// the limits the pages are checked against (a lowered limit must not let
// a listing through that it would now refuse).
func (s *Session) fingerprint(pages hash.Hash, l *Listing, lim Limits) [32]byte {
	launch, _ := json.Marshal(l.Launch)
	rest, _ := json.Marshal(struct {
		V                  int
		ProtocolVersion    string
		ServerInfo         json.RawMessage
		Instructions       *string
		InstructionsDigest rugwatch.Digest
		Offered            []string
		Cache              *CacheHint
		Warnings           []string
		Launch             json.RawMessage
		Sandboxed          bool
		SandboxNote        string
		Limits             Limits
		Identity           *RemoteIdentity
		StdoutNoise        *StdoutNoise `json:",omitempty"` // omitted, so a listing without noise keeps its fingerprint
	}{1, l.ProtocolVersion, l.ServerInfo, l.Instructions, l.InstructionsDigest, l.Offered, l.Cache, l.Warnings,
		launch, l.Sandboxed, l.SandboxNote, lim, l.Identity, l.StdoutNoise})
	fmt.Fprintf(pages, "rest %d\n", len(rest))
	pages.Write(rest)
	var out [32]byte
	copy(out[:], pages.Sum(nil))
	return out
}

func classify(what string, err error) error {
	var he *signatures.HostileError
	if errors.As(err, &he) {
		return &HostileError{Reason: what + ": " + he.Error()}
	}
	return fmt.Errorf("%s: %w", what, err)
}

// limitErr turns the SDK's frame-size error into a *LimitError naming the
// setting, so an operator knows which knob a large server needs.
func (s *Session) limitErr(err error) error {
	if err != nil && strings.Contains(err.Error(), "exceeded the configured maximum line length") {
		return fmt.Errorf("%w: %v", &LimitError{Limit: "max_response_bytes", Value: s.opts.Limits.MaxResponseBytes}, err)
	}
	return err
}

// checkPageKeys checks the top level of a tools/list result: an object
// with no key twice and no deeper nesting than maxDepth. The tools
// themselves are checked one by one when they are digested.
func checkPageKeys(raw []byte, maxDepth int) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("result is not JSON: %v", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return errors.New("result is not an object")
	}
	seen := map[string]bool{}
	spelled := map[string]string{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("result is not JSON: %v", err)
		}
		key, _ := tok.(string)
		if seen[key] {
			return fmt.Errorf("result has key %q twice", key)
		}
		seen[key] = true
		// readPage, as encoding/json, also reads a member whose name is
		// one of these in another case ("Tools"), the last one winning; a
		// client reading names exactly takes the other. Two spellings of
		// one member are refused as two of the same.
		for _, m := range pageMembers {
			if strings.EqualFold(key, m) {
				if first, dup := spelled[m]; dup {
					return fmt.Errorf("result has member %q twice (as %q and %q)", m, first, key)
				}
				spelled[m] = key
			}
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return fmt.Errorf("result is not JSON: %v", err)
		}
		if key != "tools" && !withinDepth(skip, maxDepth-1) {
			return fmt.Errorf("result field %q nests deeper than %d", key, maxDepth)
		}
	}
	return nil
}

// withinDepth reports whether raw nests at most max levels, by a byte scan
// that skips strings.
func withinDepth(raw []byte, max int) bool {
	depth := 0
	for i := 0; i < len(raw); i++ {
		switch raw[i] {
		case '"':
			for i++; i < len(raw) && raw[i] != '"'; i++ {
				if raw[i] == '\\' {
					i++
				}
			}
		case '{', '[':
			if depth++; depth > max {
				return false
			}
		case '}', ']':
			depth--
		}
	}
	return true
}
