package mcpclient

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"time"

	"github.com/rugwatch/rugwatch/sandbox"
)

// Transport names how rugwatch reaches a server.
const (
	TransportStdio = "stdio"
	TransportHTTP  = "http" // Streamable HTTP
	TransportSSE   = "sse"  // legacy HTTP+SSE
)

// Target is one server to reach, with every secret reference already
// resolved. It lives only as long as one poll or one watch session and is
// never stored or logged.
type Target struct {
	Name      string
	Transport string
	Command   string
	Args      []string
	Env       map[string]string
	Cwd       string
	URL       string
	Headers   map[string]string
	// Sandbox confines a stdio server; the zero value sandboxes it.
	Sandbox Sandbox
	// Integrity, for an npx launch, is the registry integrity (sha512-…)
	// the package that runs must have; a poll of any other artifact fails.
	Integrity string
}

// Sandbox says how a stdio server is confined (see package sandbox).
type Sandbox struct {
	// Mode is auto (also ""), strict or off. Auto runs the server
	// unconfined, with a note, only where the kernel refuses the sandbox;
	// strict fails the poll instead.
	Mode sandbox.Mode
	// Hide lists the paths the server must not reach even where a grant
	// would show them: the data dir, the config file, every file it
	// references, keys and the control socket.
	Hide []string
	// Home is the server's private, persistent HOME on the host
	// (<data_dir>/servers/<name>/home); "" gives it a fresh one per poll.
	Home string
	// Mounts grant more of the host, explicitly.
	Mounts []sandbox.Mount
	// Network is egress (""), none or host; Egress the destinations the
	// egress path lets through.
	Network sandbox.Network
	Egress  []string
	// Resources bound the server.
	Resources sandbox.Resources
	// Allow says, for a refused destination, which config key would
	// allow it ("servers[2].egress (line 14)"); nil says nothing.
	Allow func(dest string) string

	// Behaviour pinning (egress.go). EgressExempt lists the patterns of
	// Egress left out of it: the registry the launcher fetches the server
	// from, which the launch identity pins. EgressPin is the destinations
	// approved for the server, verified by the caller; nil while none is.
	// EgressPinned (`egress_mode: pinned`) refuses every other destination
	// once a set is approved; without it they pass and are reported.
	EgressExempt []string
	EgressPin    *EgressPin
	EgressPinned bool

	// refused collects the destinations refused during one poll; set by
	// the poll on its own copy of the Target. egress collects the ones
	// the server used, the same way.
	refused *refusals
	egress  *egressUse
}

// Limits bound what a server may send. Every field has a default (see
// withDefaults); a response over a limit fails the poll with *LimitError.
type Limits struct {
	MaxResponseBytes int64 // one JSON-RPC message
	MaxListingBytes  int64 // all tools of one listing, every page together
	MaxDepth         int   // JSON nesting
	MaxTools         int   // tools in one listing, all pages together
	MaxPages         int   // tools/list pages
	MaxStringBytes   int   // one JSON string
	MaxStderrBytes   int   // stderr of a stdio server kept for errors
	MaxNameBytes     int   // one tool name
	// Lines a stdio server writes on stdout that are not JSON-RPC (a
	// banner, log lines) are dropped unread, up to these per session
	// (stdoutlines.go).
	MaxNoiseLines int
	MaxNoiseBytes int64
}

func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	if l.MaxResponseBytes <= 0 {
		l.MaxResponseBytes = 16 << 20
	}
	if l.MaxListingBytes <= 0 {
		l.MaxListingBytes = 64 << 20
	}
	def(&l.MaxDepth, 64)
	def(&l.MaxTools, 10000)
	def(&l.MaxPages, 100)
	def(&l.MaxStringBytes, 1<<20)
	def(&l.MaxStderrBytes, 64<<10)
	def(&l.MaxNameBytes, 256)
	def(&l.MaxNoiseLines, 10000)
	if l.MaxNoiseBytes <= 0 {
		l.MaxNoiseBytes = 4 << 20
	}
	return l
}

// ClientInfo is what rugwatch says it is in initialize.
type ClientInfo struct {
	Name    string
	Version string
}

// DialOptions configure one connection.
type DialOptions struct {
	ClientInfo ClientInfo
	Limits     Limits
	// Hashes caches executables' digests for launch identities; nil
	// hashes the executable on every poll.
	Hashes *HashCache
	// StopGrace is how long a stdio server gets to exit after its stdin is
	// closed before its process group is killed. Default 200ms.
	StopGrace time.Duration
	// Peer, when set, gets what the server sends that is not an answer:
	// its requests (sampling, elicitation, roots) and notifications. Only
	// the proxy sets it, to forward them to its client; a monitor answers
	// ping and refuses the rest.
	Peer Peer
	// Capabilities are the client capabilities declared to the server
	// (default MonitorCapabilities: a poll sees what the most capable
	// client would). The proxy declares its client's.
	Capabilities json.RawMessage
	// Unchanged, when set, is asked after the last tools/list page whether
	// the listing's Fingerprint is the one recorded for this server at its
	// last poll; if so the listing comes back Unchanged, without its
	// per-tool checks and canonical forms (see Listing.Fingerprint). Only
	// the Poller sets it, per poll.
	Unchanged func(fingerprint [32]byte) bool
	// PreferHandshake makes Dial speak the handshake era where the server
	// offers it, and the stateless revision only where it offers nothing
	// else. The proxy sets it: its clients speak the handshake era, and
	// what changed between the eras (the log level, resource
	// subscriptions) then passes through as it is.
	PreferHandshake bool
	// RootCAs, when set, are the only roots a remote server's certificate
	// may chain to (tests inject their CAs here); nil uses the system's.
	RootCAs *x509.CertPool

	// rawStdout hands a stdio server's stdout to the SDK unfiltered, as
	// before stdoutlines.go: only tests set it, to show what the filter
	// changes.
	rawStdout bool
}

// LimitError says which limit a server response broke.
type LimitError struct {
	Limit string // e.g. "max_tools"
	Value int64
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("server response exceeds %s (%d)", e.Limit, e.Value)
}
