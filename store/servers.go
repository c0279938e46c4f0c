package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/rugwatch/rugwatch"
)

// ServerRecord is the last known picture of one server. Tools are kept
// inline because they are always read and written together with the poll
// that produced them.
type ServerRecord struct {
	Name         string
	Transport    string
	Reachable    bool
	LastPolledAt time.Time
	Error        string
	// ConsecutiveFailures counts failed polls since the last success.
	ConsecutiveFailures int
	// Unreachable is true while a server.unreachable event has been raised
	// and no server.recovered has followed it.
	Unreachable        bool
	InstructionsDigest rugwatch.Digest
	Instructions       string
	// InstructionsState is approved, pending, drifted or revoked, like a
	// tool's; empty when the server sends no instructions.
	InstructionsState    rugwatch.State     `json:",omitempty"`
	InstructionsApproved rugwatch.Digest    `json:",omitempty"`
	InstructionsFindings []rugwatch.Finding `json:",omitempty"`
	// Launch is the launch identity of a stdio server at the last poll
	// (executable, its SHA-256, package spec, reported version);
	// LaunchPinned is the one pinned at first sight or the last approval,
	// and LaunchDrifted says they differ.
	Launch        json.RawMessage `json:",omitempty"`
	LaunchPinned  json.RawMessage `json:",omitempty"`
	LaunchDrifted bool            `json:",omitempty"`
	// LaunchTransitionSeq is the seq of the newest launch.drifted,
	// identity.drifted or launch pin (tool.approved naming neither a tool
	// nor a digest): what a signed launch approval is bound to.
	LaunchTransitionSeq uint64 `json:",omitempty"`
	// InstructionsTransitionSeq and InstructionsWithdrawnSeq are the
	// instructions' counterparts of a tool's LastTransitionSeq and
	// WithdrawnSeq.
	InstructionsTransitionSeq uint64 `json:",omitempty"`
	InstructionsWithdrawnSeq  uint64 `json:",omitempty"`
	Tools                     map[string]ToolRecord

	// Sandboxed says the last poll of a stdio server ran it in the
	// sandbox; SandboxNote says why it did not.
	Sandboxed   bool   `json:"sandboxed"`
	SandboxNote string `json:"sandbox_note,omitempty"`

	// ProtocolVersion is the MCP revision the last successful poll
	// negotiated. Cloaked is, per tool, how it differed across revisions
	// at the last revision_check (monitor.cloakedKey), so that the same
	// difference is raised once.
	ProtocolVersion string            `json:"protocol_version,omitempty"`
	Cloaked         map[string]string `json:"cloaked,omitempty"`

	// Identity is the remote identity of an HTTP or SSE server at the
	// last poll (mcpclient.RemoteIdentity); IdentityPinned the one pinned at
	// first sight or the last approval, IdentityDrifted that they differ.
	Identity        json.RawMessage `json:"identity,omitempty"`
	IdentityPinned  json.RawMessage `json:"identity_pinned,omitempty"`
	IdentityDrifted bool            `json:"identity_drifted,omitempty"`

	// Findings are the last good poll's findings about the server rather
	// than any of its tools (stdout noise); a server.flagged event marks
	// each one's first appearance.
	Findings []rugwatch.Finding `json:"findings,omitempty"`

	// Churn is the server's budget of new tool names
	// (limits.max_new_tools_per_hour) and, while it churns, what its
	// summarised listings held (churn.go); nil when it listed no new name
	// within the last hour.
	Churn *ChurnState `json:"churn,omitempty"`

	// Egress is what a sandboxed server reached through its egress path
	// and the destinations approved for it (behaviour pinning, egress.go);
	// nil until a poll ran it with an egress path.
	Egress *EgressRecord `json:"egress,omitempty"`
}

// ToolRecord is where one tool of one server stands.
type ToolRecord struct {
	Name           string
	State          rugwatch.State
	Severity       rugwatch.Severity
	ObservedDigest rugwatch.Digest
	// Definition is the canonical observed definition, stored (apart from
	// the record, see bucketDefinitions) and returned byte for byte.
	Definition     json.RawMessage    `json:",omitempty"`
	ApprovedDigest rugwatch.Digest    `json:",omitempty"`
	Findings       []rugwatch.Finding `json:",omitempty"`
	Changes        []rugwatch.Change  `json:",omitempty"`
	FirstSeen      time.Time
	LastChanged    time.Time
	// PrevState is the state a removed tool had before it vanished, so a
	// drifted or revoked tool that comes back is drifted or revoked again.
	PrevState rugwatch.State `json:",omitempty"`
	// LastTransitionSeq is the seq of the newest event that moved this
	// tool (tool.new, drifted, removed, approved, revoked). An approval is
	// signed for it (the statement's resolves) and accepted only while it
	// is still the newest, so an envelope signed for an older state, or
	// sent a second time, is refused. WithdrawnSeq is the newest drift or
	// revocation: an approval bound to an older seq never approves the tool
	// again. Both are kept by NoteEvent; 0 means none yet.
	LastTransitionSeq uint64 `json:",omitempty"`
	WithdrawnSeq      uint64 `json:",omitempty"`
}

// moves says what an event does to the transition seqs of the tool it
// names (tool "" is the server's instructions): ok false when it moves
// nothing, withdraws when it also takes an approval away. One rule for
// NoteEvent and for the migration that backfilled older stores.
func moves(typ rugwatch.EventType, tool string, approved rugwatch.Digest) (ok, withdraws bool) {
	switch typ {
	case rugwatch.EventToolNew, rugwatch.EventToolRemoved:
		return tool != "", false
	case rugwatch.EventToolDrifted, rugwatch.EventToolRevoked:
		return tool != "", true
	case rugwatch.EventToolApproved:
		// tool.approved without a tool is either the instructions'
		// approval (it names the digest) or a launch pin (it does not).
		return tool != "" || approved != "", false
	case rugwatch.EventInstructionsDrifted:
		return tool == "", true
	}
	return false, false
}

// Moves says whether the event moves its tool's (or the instructions')
// transition seqs, and whether it also takes an approval away (a drift or
// a revocation): the rule NoteEvent applies, for readers of the log.
func (tr Transition) Moves() (ok, withdraws bool) { return moves(tr.Type, tr.Tool, tr.ApprovedDigest) }

// NoteEvent moves the transition seqs of the tool (or the instructions)
// that e, an appended event of this server, is about. Call it for every
// event appended with the record, before PutServer.
func (r *ServerRecord) NoteEvent(e rugwatch.Event) {
	if e.Seq == 0 || e.Server != r.Name {
		return
	}
	switch {
	case e.Type == rugwatch.EventLaunchDrifted, e.Type == rugwatch.EventIdentityDrifted,
		e.Type == rugwatch.EventToolApproved && e.Tool == "" && e.ApprovedDigest == "":
		r.LaunchTransitionSeq = e.Seq
		return
	}
	ok, withdraws := moves(e.Type, e.Tool, e.ApprovedDigest)
	if !ok {
		return
	}
	if e.Tool == "" {
		r.InstructionsTransitionSeq = e.Seq
		if withdraws {
			r.InstructionsWithdrawnSeq = e.Seq
		}
		return
	}
	t, found := r.Tools[e.Tool]
	if !found {
		return
	}
	t.LastTransitionSeq = e.Seq
	if withdraws {
		t.WithdrawnSeq = e.Seq
	}
	r.Tools[e.Tool] = t
}

// Server returns the record of one server; false if none is stored.
func (t *Tx) Server(name string) (ServerRecord, bool, error) {
	r, ok, err := t.ServerStates(name)
	if err != nil || !ok {
		return r, ok, err
	}
	if err := t.fillDefinitions(&r); err != nil {
		return ServerRecord{}, false, err
	}
	return r, true, nil
}

// ServerStates is Server without the tools' definitions (Definition is
// nil): what a report prints, read without the bytes it does not print.
func (t *Tx) ServerStates(name string) (ServerRecord, bool, error) {
	b, err := t.bucket(bucketServers)
	if err != nil {
		return ServerRecord{}, false, err
	}
	if name == "" {
		return ServerRecord{}, false, nil
	}
	r, ok, err := getJSON[ServerRecord](b, []byte(name), fmt.Sprintf("server %q", name))
	if err != nil || !ok {
		return ServerRecord{}, false, err
	}
	t.foldPolled(&r)
	return r, true, nil
}

// bucketDefinitions holds the canonical definitions of each server's
// tools apart from its record: definitions/<server> → a JSON object,
// tool name → definition, byte for byte. The record keeps the states,
// digests and findings. Definitions are most of a record's bytes, and
// most readers (a report, a summary, the unchanged-listing check's
// digest of the record) never look at them; a record holding them made
// every status decode and hash all of them. One value per server, not a
// bucket of one key per tool: a bucket per server costs a branch page
// and half-filled leaves, a long value packs into whole pages.
var bucketDefinitions = []byte("definitions")

// fillDefinitions reads r's tools' definitions (copies: bbolt's bytes
// live only as long as the transaction).
func (t *Tx) fillDefinitions(r *ServerRecord) error {
	b := t.tx.Bucket(bucketDefinitions)
	if b == nil || len(r.Tools) == 0 {
		return nil
	}
	v := b.Get([]byte(r.Name))
	if v == nil {
		return nil
	}
	var defs map[string]json.RawMessage
	if err := json.Unmarshal(v, &defs); err != nil {
		return fmt.Errorf("decode definitions of %q: %w", r.Name, err)
	}
	for k, tr := range r.Tools {
		if d, ok := defs[k]; ok {
			tr.Definition = d
			r.Tools[k] = tr
		}
	}
	return nil
}

// encodeDefinitions is the value of r's definitions, nil when it has none.
func encodeDefinitions(r ServerRecord) ([]byte, error) {
	defs := make(map[string]json.RawMessage, len(r.Tools))
	for k, tr := range r.Tools {
		if len(tr.Definition) > 0 {
			defs[k] = tr.Definition
		}
	}
	if len(defs) == 0 {
		return nil, nil
	}
	v, err := encode(defs)
	if err != nil {
		return nil, fmt.Errorf("encode definitions of %q: %w", r.Name, err)
	}
	return v, nil
}

// putDefinitions stores r's tools' definitions when their bytes changed.
func (t *Tx) putDefinitions(r ServerRecord) error {
	v, err := encodeDefinitions(r)
	if err != nil {
		return err
	}
	b := t.tx.Bucket(bucketDefinitions)
	if b == nil {
		if v == nil {
			return nil
		}
		if b, err = t.tx.CreateBucket(bucketDefinitions); err != nil {
			return fmt.Errorf("create definitions bucket: %w", err)
		}
	}
	cur := b.Get([]byte(r.Name))
	switch {
	case v == nil && cur != nil:
		err = b.Delete([]byte(r.Name))
	case v != nil && !bytes.Equal(cur, v):
		err = b.Put([]byte(r.Name), v)
	}
	if err != nil {
		return fmt.Errorf("put definitions of %q: %w", r.Name, err)
	}
	return nil
}

// sameDefinitions reports whether the stored definitions of r's server
// are exactly r's.
func (t *Tx) sameDefinitions(r ServerRecord) (bool, error) {
	v, err := encodeDefinitions(r)
	if err != nil {
		return false, err
	}
	var cur []byte
	if b := t.tx.Bucket(bucketDefinitions); b != nil {
		cur = b.Get([]byte(r.Name))
	}
	return bytes.Equal(cur, v), nil
}

// withoutDefinitions is r as its record stores it: definitions apart.
func withoutDefinitions(r ServerRecord) ServerRecord {
	if len(r.Tools) == 0 {
		return r
	}
	tools := make(map[string]ToolRecord, len(r.Tools))
	for k, tr := range r.Tools {
		tr.Definition = nil
		tools[k] = tr
	}
	r.Tools = tools
	return r
}

// Servers returns every stored server, sorted by name.
func (t *Tx) Servers() ([]ServerRecord, error) {
	b, err := t.bucket(bucketServers)
	if err != nil {
		return nil, err
	}
	var out []ServerRecord
	err = b.ForEach(func(k, v []byte) error {
		var r ServerRecord
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("decode server %q: %w", k, err)
		}
		t.foldPolled(&r)
		if err := t.fillDefinitions(&r); err != nil {
			return err
		}
		out = append(out, r)
		return nil
	})
	return out, err
}

// PutServer stores r, replacing any record with the same name. A tool's map
// key and Name must agree; an empty Name takes the key.
func (t *Tx) PutServer(r ServerRecord) error {
	b, err := t.bucket(bucketServers)
	if err != nil {
		return err
	}
	if r.Name == "" {
		return errors.New("put server: empty name")
	}
	for k, tr := range r.Tools {
		if tr.Name != "" && tr.Name != k {
			return fmt.Errorf("put server %q: tool keyed %q is named %q", r.Name, k, tr.Name)
		}
	}
	r = normalized(r)
	v, err := encode(withoutDefinitions(r))
	if err != nil {
		return fmt.Errorf("encode server %q: %w", r.Name, err)
	}
	if err := b.Put([]byte(r.Name), v); err != nil {
		return fmt.Errorf("put server %q: %w", r.Name, err)
	}
	t.changed(r.Name)
	return t.putDefinitions(r)
}

// normalized is r as PutServer stores it: every tool named by its key.
func normalized(r ServerRecord) ServerRecord {
	if len(r.Tools) == 0 {
		return r
	}
	tools := make(map[string]ToolRecord, len(r.Tools))
	for k, tr := range r.Tools {
		if tr.Name == "" {
			tr.Name = k
		}
		tools[k] = tr
	}
	r.Tools = tools
	return r
}

// DeleteServer removes a server's record (not its approvals or events);
// false if there was none.
func (t *Tx) DeleteServer(name string) (bool, error) {
	b, err := t.bucket(bucketServers)
	if err != nil {
		return false, err
	}
	if name == "" || b.Get([]byte(name)) == nil {
		return false, nil
	}
	if err := b.Delete([]byte(name)); err != nil {
		return false, fmt.Errorf("delete server %q: %w", name, err)
	}
	if b := t.tx.Bucket(bucketDefinitions); b != nil {
		if err := b.Delete([]byte(name)); err != nil {
			return false, fmt.Errorf("delete definitions of %q: %w", name, err)
		}
	}
	t.changed(name)
	return true, nil
}

// bucketPolled holds, per server, when it was last polled (unix ns,
// uint64 big endian). A poll whose listing changed nothing writes only
// this key, never the server's record with its tools inline: a fleet's
// steady cycle would otherwise rewrite every definition on every poll.
// Readers of a ServerRecord see the later of the two times. Created by
// the first write that needs it; a store without it reads as never.
var bucketPolled = []byte("polled")

// MarkPolled records that server was polled at t, without touching its
// record.
func (t *Tx) MarkPolled(server string, at time.Time) error {
	if t.tx.ended() {
		return ErrTxClosed
	}
	if server == "" {
		return errors.New("mark polled: empty server name")
	}
	b, err := t.tx.CreateBucketIfNotExists(bucketPolled)
	if err != nil {
		return fmt.Errorf("create polled bucket: %w", err)
	}
	b.fillPercent(0.9) // keys are few and small; rewritten in place
	if err := b.Put([]byte(server), u64(uint64(at.UnixNano()))); err != nil {
		return fmt.Errorf("mark %q polled: %w", server, err)
	}
	return nil
}

// LastPolled is when server was last marked polled by MarkPolled; false
// if never. Tx.Server folds it into LastPolledAt already; it is for
// readers that decode records themselves (summaries).
func (t *Tx) LastPolled(server string) (time.Time, bool) {
	if t.tx.ended() {
		return time.Time{}, false
	}
	b := t.tx.Bucket(bucketPolled)
	if b == nil {
		return time.Time{}, false
	}
	v := b.Get([]byte(server))
	if len(v) != 8 {
		return time.Time{}, false
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(v))).UTC(), true
}

// foldPolled makes r.LastPolledAt the later of the record's own time and
// the polled bucket's.
func (t *Tx) foldPolled(r *ServerRecord) {
	if at, ok := t.LastPolled(r.Name); ok && at.After(r.LastPolledAt) {
		r.LastPolledAt = at
	}
}

// SameServer reports whether r, stored with PutServer, would store exactly
// the bytes stored now, LastPolledAt aside (it lives in the polled bucket
// for a poll that changed nothing). False when no record is stored.
func (t *Tx) SameServer(r ServerRecord) (bool, error) {
	b, err := t.bucket(bucketServers)
	if err != nil {
		return false, err
	}
	cur := b.Get([]byte(r.Name))
	if cur == nil {
		return false, nil
	}
	r = normalized(r)
	v, err := encode(withoutDefinitions(r))
	if err != nil {
		return false, fmt.Errorf("encode server %q: %w", r.Name, err)
	}
	if !equalButPolled(v, cur) {
		return false, nil
	}
	return t.sameDefinitions(r)
}

// equalButPolled compares two encoded ServerRecords except for the value
// of their LastPolledAt. It is the record's fourth field, after two JSON
// strings that cannot hold an unescaped quote, so its first occurrence
// is the record's own and not one inside a tool definition; decoding
// 50 tools to compare one timestamp would cost more than the poll.
func equalButPolled(a, b []byte) bool {
	key := []byte(`"LastPolledAt":"`)
	span := func(v []byte) (int, int, bool) {
		i := bytes.Index(v, key)
		if i < 0 {
			return 0, 0, false
		}
		start := i + len(key)
		end := bytes.IndexByte(v[start:], '"')
		if end < 0 {
			return 0, 0, false
		}
		return start, start + end, true
	}
	as, ae, ok1 := span(a)
	bs, be, ok2 := span(b)
	if !ok1 || !ok2 {
		return bytes.Equal(a, b)
	}
	return bytes.Equal(a[:as], b[:bs]) && bytes.Equal(a[ae:], b[be:])
}

// ServerTools calls fn for every stored server with the names of its
// tools in state, one record decoded at a time (no definitions kept), so
// a caller indexing a fleet's tool names never holds the whole store.
func (t *Tx) ServerTools(fn func(server string, tools map[string]rugwatch.State) error) error {
	b, err := t.bucket(bucketServers)
	if err != nil {
		return err
	}
	return b.ForEach(func(k, v []byte) error {
		var r struct {
			Tools map[string]struct{ State rugwatch.State }
		}
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("decode server %q: %w", k, err)
		}
		tools := make(map[string]rugwatch.State, len(r.Tools))
		for n, tr := range r.Tools {
			tools[n] = tr.State
		}
		return fn(string(k), tools)
	})
}
