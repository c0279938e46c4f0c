package configs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is the whole rugwatch.yaml. Load and Parse return it with defaults
// applied, relative paths made absolute and every value validated; secrets
// are left as references.
type Config struct {
	Path    string `yaml:"-"`        // file it was loaded from, as given
	DataDir string `yaml:"data_dir"` // default "./data"
	// Store, when set, is the PostgreSQL database (a postgres:// URL, or
	// a reference to one) the store lives in, shared by every replica
	// that names it; absent, the store is bbolt in data_dir.
	Store   Secret  `yaml:"store"`
	Cluster Cluster `yaml:"cluster"`
	// Keys is trusted_keys as written: plain paths or {path, name,
	// roles}. TrustedKeys is their paths, the form every key loader reads.
	Keys             []TrustedKey `yaml:"trusted_keys"`
	TrustedKeys      []string     `yaml:"-"`                  // default [<data_dir>/approver.pub]
	Approvals        Approvals    `yaml:"approvals"`          // quorum and roles an approval needs
	ApprovalsFrom    string       `yaml:"approvals_from"`     // lock file serve takes approvals from, re-read on change and SIGHUP
	ApproveFirstSeen bool         `yaml:"approve_first_seen"` // trust on first sight
	Ephemeral        bool         `yaml:"ephemeral"`          // serve: fresh data dir and keys per run, beside the config (demos)
	SigningKey       string       `yaml:"signing_key"`        // only with approve_first_seen or retention
	HTTPListen       string       `yaml:"http_listen"`        // optional host:port: health, /metrics, web view
	HTTPToken        Secret       `yaml:"http_token"`         // bearer token reference; required off loopback
	ProxyListen      string       `yaml:"proxy_listen"`       // optional host:port for the HTTP proxy
	Proxy            Proxy        `yaml:"proxy"`
	Gateway          Gateway      `yaml:"gateway"` // proxy --all and proxy_listen's /mcp
	Classifier       Classifier   `yaml:"classifier"`
	Concurrency      int          `yaml:"concurrency"`       // default max(16, 8 per core)
	UnreachableAfter int          `yaml:"unreachable_after"` // default 3 failed polls
	ClientInfo       ClientInfo   `yaml:"client_info"`
	Defaults         Defaults     `yaml:"defaults"`
	Limits           Limits       `yaml:"limits"`
	Servers          []Server     `yaml:"servers"`
	Notify           Notify       `yaml:"notify"`
	Control          Control      `yaml:"control"`

	// Retention prunes events older than this from the event log, behind
	// a checkpoint of the chain head signed with signing_key; 0 keeps
	// every event.
	Retention Retention `yaml:"retention"`

	// lines maps a key path ("servers[1].url") to the line it was written
	// on, so that validation errors can point at it.
	lines lineIndex
}

// lineIndex maps key paths ("servers[1].url") to lines.
type lineIndex map[string]int

// ClientInfo is what rugwatch calls itself in the MCP initialize request.
type ClientInfo struct {
	Name    string `yaml:"name"`    // default "rugwatch"
	Version string `yaml:"version"` // default "dev"
}

// Defaults apply to every server that does not set its own.
type Defaults struct {
	Schedule string   `yaml:"schedule"` // default "@every 5m"
	Timeout  Duration `yaml:"timeout"`  // default 30s
	// Sandbox is how stdio servers are confined: auto (default) sandboxes
	// where the kernel allows it, strict refuses a server it cannot
	// sandbox, off runs servers as rugwatch's own user (unsafe).
	Sandbox string `yaml:"sandbox"`
	// Network is what a sandboxed server may reach: egress (default: its
	// own loopback and the egress proxy), none, or host (unsafe).
	Network string `yaml:"network"`
	// Egress lists host:port patterns every server may reach.
	Egress []string `yaml:"egress"`
	// EgressMode says what a destination outside a server's approved
	// egress pin means: alert (default: egress.drifted) or pinned (also
	// refused until approved). See egress.go.
	EgressMode string `yaml:"egress_mode"`
	// Resources bound every sandboxed server.
	Resources Resources `yaml:"resources"`
}

// Limits bound what a server may send. Zero means the default.
type Limits struct {
	MaxResponseBytes int64 `yaml:"max_response_bytes"` // default 16 MiB
	MaxListingBytes  int64 `yaml:"max_listing_bytes"`  // default 64 MiB, all pages together
	MaxDepth         int   `yaml:"max_depth"`          // default 64
	MaxTools         int   `yaml:"max_tools"`          // default 10000
	MaxPages         int   `yaml:"max_pages"`          // default 100
	MaxStringBytes   int   `yaml:"max_string_bytes"`   // default 1 MiB
	MaxStderrBytes   int   `yaml:"max_stderr_bytes"`   // default 64 KiB
	// MaxNewToolsPerHour is how many tool names a server may list for the
	// first time per hour (a budget that refills at that rate); a listing
	// beyond it is summarised, not recorded tool by tool. Default 500.
	MaxNewToolsPerHour int `yaml:"max_new_tools_per_hour"`
}

// Server is one watched MCP server: a stdio command or a URL.
type Server struct {
	Name      string            `yaml:"name"`
	Command   string            `yaml:"command"`
	Args      []string          `yaml:"args"`
	Env       map[string]Secret `yaml:"env"`
	Cwd       string            `yaml:"cwd"`
	URL       string            `yaml:"url"`
	Transport string            `yaml:"transport"` // "stdio" | "http" | "sse"; filled in at load
	Headers   map[string]Secret `yaml:"headers"`
	Schedule  string            `yaml:"schedule"` // "" means Defaults.Schedule
	Timeout   Duration          `yaml:"timeout"`  // 0 means Defaults.Timeout
	Watch     bool              `yaml:"watch"`
	Sandbox   string            `yaml:"sandbox"` // stdio only; "" at load means Defaults.Sandbox
	// Network, Egress, Resources and Mounts confine a stdio server (see
	// package sandbox); "" and zero mean the defaults.
	Network    string    `yaml:"network"`
	Egress     []string  `yaml:"egress"`
	EgressMode string    `yaml:"egress_mode"` // "" means Defaults.EgressMode
	Resources  Resources `yaml:"resources"`
	Mounts     []Mount   `yaml:"mounts"`
	// Approvals replaces the global approvals for this server; filled
	// from them at load when left out.
	Approvals Approvals `yaml:"approvals"`
	Line      int       `yaml:"-"` // line of the server's entry, for errors
	// SandboxHide is what the server's sandbox hides: the config's
	// ReferencedPaths, filled by ApplyDefaults. Call ApplyDefaults again
	// after changing DataDir, TrustedKeys or SigningKey in code.
	SandboxHide []string `yaml:"-"`
	// RevisionCheck lists the server once per protocol era it offers and
	// raises tool.cloaked where the tools differ (stdio and http only).
	RevisionCheck bool `yaml:"revision_check"`
	// Integrity, for an npx launch, is the npm registry integrity
	// (sha512-…) of the package that must run; a poll that finds another
	// artifact installed fails instead of listing it.
	Integrity string `yaml:"integrity"`
	// RequireTLS refuses a url server reached over plain http://.
	RequireTLS bool `yaml:"require_tls"`
}

// Transports.
const (
	TransportStdio = "stdio"
	TransportHTTP  = "http"
	TransportSSE   = "sse"
)

// EffectiveSchedule is the server's schedule, else the default one.
func (s Server) EffectiveSchedule(d Defaults) string {
	switch {
	case s.Schedule != "":
		return s.Schedule
	case d.Schedule != "":
		return d.Schedule
	}
	return defaultSchedule
}

// EffectiveTimeout is the server's timeout, else the default one.
func (s Server) EffectiveTimeout(d Defaults) time.Duration {
	switch {
	case s.Timeout > 0:
		return time.Duration(s.Timeout)
	case d.Timeout > 0:
		return time.Duration(d.Timeout)
	}
	return defaultTimeout
}

// Control says who besides the daemon's own uid and root may use its
// control socket (the socket is also 0600, so these need a group-readable
// data dir set up by the operator).
type Control struct {
	AllowUIDs []int `yaml:"allow_uids"`
	AllowGIDs []int `yaml:"allow_gids"`
}

// Notify lists the alert channels.
type Notify struct {
	Webhooks []Webhook `yaml:"webhooks"`
	Email    []Email   `yaml:"email"`
}

// Webhook is a Standard Webhooks endpoint.
type Webhook struct {
	Name        string            `yaml:"name"`
	URL         string            `yaml:"url"`
	Secret      Secret            `yaml:"secret"`       // whsec_… signing secret
	Secrets     []Secret          `yaml:"secrets"`      // extra secrets during rotation
	Headers     map[string]Secret `yaml:"headers"`      // extra request headers
	MinSeverity string            `yaml:"min_severity"` // info | warning | critical; default warning
	Line        int               `yaml:"-"`
}

// Email is one SMTP channel.
type Email struct {
	Name        string   `yaml:"name"`
	Host        string   `yaml:"host"`
	Port        int      `yaml:"port"` // default 587 (starttls), 465 (tls), 25 (none)
	TLS         string   `yaml:"tls"`  // starttls (default) | tls | none (loopback hosts only)
	Username    string   `yaml:"username"`
	Password    Secret   `yaml:"password"`
	From        string   `yaml:"from"`
	To          []string `yaml:"to"`
	MinSeverity string   `yaml:"min_severity"` // info | warning | critical; default warning
	Line        int      `yaml:"-"`
}

// Email TLS modes.
const (
	TLSStartTLS = "starttls"
	TLSImplicit = "tls"
	TLSNone     = "none"
)

// Duration is a time.Duration written as "30s" in YAML. A written duration
// must be positive.
type Duration time.Duration

// String implements fmt.Stringer.
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return errors.New(`must be a duration like "30s"`)
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return errors.New(`must be a duration like "30s"`)
	}
	if v <= 0 {
		return errors.New("must be greater than 0")
	}
	*d = Duration(v)
	return nil
}

// defaultConcurrency is eight polls in flight per core, at least 16: a
// poll mostly waits on its round trips, so one core is kept busy by
// several, and memory is bounded by this number of listings in flight.
// (monitor.DefaultConcurrency is the same rule for a Scheduler built
// without a config.)
func defaultConcurrency() int { return max(16, 8*runtime.GOMAXPROCS(0)) }

// Defaults of DESIGN.md.
const (
	defaultDataDir          = "./data"
	defaultUnreachableAfter = 3
	defaultClientName       = "rugwatch"
	defaultClientVersion    = "dev"
	defaultSchedule         = "@every 5m"
	defaultTimeout          = 30 * time.Second
	defaultMaxResponseBytes = 16 << 20
	defaultMaxDepth         = 64
	defaultMaxTools         = 10000
	defaultMaxPages         = 100
	defaultMaxStringBytes   = 1 << 20
	defaultMaxStderrBytes   = 64 << 10
	defaultMaxNewTools      = 500
	defaultMinSeverity      = "warning"
	defaultSandbox          = "auto"
)

// Load reads the file at path, parses it, applies defaults and validates it.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(data, path)
}

// Parse decodes data as the config file at path (used for error messages and
// as the base of relative paths; "" means the working directory), applies
// defaults and validates. Every problem found is reported, one per line.
// No secret reference is resolved.
func Parse(data []byte, path string) (*Config, error) {
	c := &Config{Path: path, lines: lineIndex{}}
	d := &decoder{lines: c.lines}
	root, err := parseDocument(data)
	if err != nil {
		return nil, c.syntaxError(err)
	}
	if root != nil {
		d.decode(root, reflectValue(c), "")
	}
	base := baseDir(path)
	c.resolvePaths(base)
	c.setSecretDirs(base)
	c.ApplyDefaults()
	errs := d.errs
	bad := map[string]bool{}
	for _, e := range errs {
		bad[e.path] = true
	}
	for _, e := range c.validate() {
		if !bad[e.path] {
			errs = append(errs, e)
		}
	}
	if len(errs) > 0 {
		return nil, c.joinErrors(errs)
	}
	return c, nil
}

// parseDocument returns the top node of the single YAML document in data,
// or nil for an empty file.
func parseDocument(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, err
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("yaml: line %d: only one YAML document is allowed", extra.Line)
	}
	if doc.Kind == yaml.DocumentNode {
		if len(doc.Content) == 0 {
			return nil, nil
		}
		return doc.Content[0], nil
	}
	return &doc, nil
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func (c *Config) syntaxError(err error) error {
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		return errors.New(c.position(line) + m[2])
	}
	return errors.New(c.position(0) + err.Error())
}

func baseDir(path string) string {
	dir := filepath.Dir(path)
	if abs, err := filepath.Abs(dir); err == nil {
		return abs
	}
	return dir
}

// EphemeralDataDir is where `serve` keeps the data of an ephemeral run of
// the config at path: beside the file, hidden, named after it
// (configs/demo.yaml: configs/.demo-data). Every command of that config
// finds it there, so `history` and `diff` read the demo's data while it
// runs and after it stopped; serve empties it at the start of each run.
func EphemeralDataDir(path string) string {
	stem := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	if path == "" || stem == "" || stem == "." {
		stem = "rugwatch"
	}
	return filepath.Join(baseDir(path), "."+stem+"-data")
}

// resolvePaths makes data_dir, trusted_keys, signing_key and server cwd
// absolute against the config file's directory, so that nothing depends on
// the working directory of whoever reads the config later.
func (c *Config) resolvePaths(base string) {
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(base, p)
	}
	if c.DataDir == "" && !c.has("data_dir") {
		c.DataDir = defaultDataDir
		if c.Ephemeral {
			c.DataDir = EphemeralDataDir(c.Path)
		}
	}
	c.DataDir = abs(c.DataDir)
	for i := range c.Keys {
		c.Keys[i].Path = abs(c.Keys[i].Path)
	}
	for i := range c.TrustedKeys {
		c.TrustedKeys[i] = abs(c.TrustedKeys[i])
	}
	c.SigningKey = abs(c.SigningKey)
	c.ApprovalsFrom = abs(c.ApprovalsFrom)
	for i := range c.Servers {
		c.Servers[i].Cwd = abs(c.Servers[i].Cwd)
	}
}

// setSecretDirs makes relative ${file:} references resolve against the
// config file's directory too.
func (c *Config) setSecretDirs(base string) {
	inMap := func(m map[string]Secret) {
		for k, s := range m {
			s.dir = base
			m[k] = s
		}
	}
	for i := range c.Servers {
		inMap(c.Servers[i].Env)
		inMap(c.Servers[i].Headers)
	}
	for i := range c.Notify.Webhooks {
		w := &c.Notify.Webhooks[i]
		w.Secret.dir = base
		for j := range w.Secrets {
			w.Secrets[j].dir = base
		}
		inMap(w.Headers)
	}
	for i := range c.Notify.Email {
		c.Notify.Email[i].Password.dir = base
	}
	c.HTTPToken.dir = base
	c.Proxy.Token.dir = base
	c.Store.dir = base
}

// has reports whether the key at path was written in the file.
func (c *Config) has(path string) bool {
	_, ok := c.lines[path]
	return ok
}

// ApplyDefaults fills every value left unset. Parse calls it; call it
// yourself on a Config built in code before Validate. A key written in the
// file with a zero value is left alone so that Validate can reject it.
func (c *Config) ApplyDefaults() {
	unset := func(zero bool, path string) bool { return zero && !c.has(path) }
	if unset(c.DataDir == "", "data_dir") {
		c.DataDir = defaultDataDir
	}
	c.applyApprovalDefaults()
	c.applyClusterDefaults()
	if len(c.TrustedKeys) == 0 {
		c.TrustedKeys = []string{filepath.Join(c.DataDir, "approver.pub")}
	}
	if unset(c.Concurrency == 0, "concurrency") {
		c.Concurrency = defaultConcurrency()
	}
	if unset(c.UnreachableAfter == 0, "unreachable_after") {
		c.UnreachableAfter = defaultUnreachableAfter
	}
	if unset(c.ClientInfo.Name == "", "client_info.name") {
		c.ClientInfo.Name = defaultClientName
	}
	if unset(c.ClientInfo.Version == "", "client_info.version") {
		c.ClientInfo.Version = defaultClientVersion
	}
	if unset(c.Defaults.Schedule == "", "defaults.schedule") {
		c.Defaults.Schedule = defaultSchedule
	}
	if c.Defaults.Timeout == 0 {
		c.Defaults.Timeout = Duration(defaultTimeout)
	}
	l := &c.Limits
	if unset(l.MaxResponseBytes == 0, "limits.max_response_bytes") {
		l.MaxResponseBytes = defaultMaxResponseBytes
	}
	if unset(l.MaxListingBytes == 0, "limits.max_listing_bytes") {
		l.MaxListingBytes = 64 << 20
	}
	if unset(l.MaxDepth == 0, "limits.max_depth") {
		l.MaxDepth = defaultMaxDepth
	}
	if unset(l.MaxTools == 0, "limits.max_tools") {
		l.MaxTools = defaultMaxTools
	}
	if unset(l.MaxPages == 0, "limits.max_pages") {
		l.MaxPages = defaultMaxPages
	}
	if unset(l.MaxStringBytes == 0, "limits.max_string_bytes") {
		l.MaxStringBytes = defaultMaxStringBytes
	}
	if unset(l.MaxStderrBytes == 0, "limits.max_stderr_bytes") {
		l.MaxStderrBytes = defaultMaxStderrBytes
	}
	if unset(l.MaxNewToolsPerHour == 0, "limits.max_new_tools_per_hour") {
		l.MaxNewToolsPerHour = defaultMaxNewTools
	}
	if unset(c.Defaults.Sandbox == "", "defaults.sandbox") {
		c.Defaults.Sandbox = defaultSandbox
	}
	for i := range c.Servers {
		s := &c.Servers[i]
		if s.Sandbox == "" && s.Command != "" && !c.has(fmt.Sprintf("servers[%d].sandbox", i)) {
			s.Sandbox = c.Defaults.Sandbox
		}
		if s.Transport == "" && !c.has(fmt.Sprintf("servers[%d].transport", i)) {
			switch {
			case s.Command != "" && s.URL == "":
				s.Transport = TransportStdio
			case s.URL != "" && s.Command == "":
				s.Transport = TransportHTTP
			}
		}
	}
	if len(c.Servers) > 0 {
		hide := c.ReferencedPaths()
		for i := range c.Servers {
			if c.Servers[i].Command != "" {
				c.Servers[i].SandboxHide = hide
			}
		}
	}
	for i := range c.Notify.Webhooks {
		w := &c.Notify.Webhooks[i]
		if unset(w.MinSeverity == "", fmt.Sprintf("notify.webhooks[%d].min_severity", i)) {
			w.MinSeverity = defaultMinSeverity
		}
	}
	for i := range c.Notify.Email {
		e := &c.Notify.Email[i]
		if unset(e.TLS == "", fmt.Sprintf("notify.email[%d].tls", i)) {
			e.TLS = TLSStartTLS
		}
		if unset(e.Port == 0, fmt.Sprintf("notify.email[%d].port", i)) {
			switch e.TLS {
			case TLSImplicit:
				e.Port = 465
			case TLSNone:
				e.Port = 25
			default:
				e.Port = 587
			}
		}
		if unset(e.MinSeverity == "", fmt.Sprintf("notify.email[%d].min_severity", i)) {
			e.MinSeverity = defaultMinSeverity
		}
	}
}

// Server returns the server called name.
func (c *Config) Server(name string) (Server, bool) {
	for _, s := range c.Servers {
		if s.Name == name {
			return s, true
		}
	}
	return Server{}, false
}
