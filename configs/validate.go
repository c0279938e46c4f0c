package configs

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/mail"
	"net/textproto"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/robfig/cron/v3"
)

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)

// ValidName reports whether name is a valid name for a server or an alert
// channel: what discovery turns a client's server keys into must pass the
// same check the config does.
func ValidName(name string) bool { return nameRE.MatchString(name) }

// Validate checks every value and reports every problem, one per line, each
// naming file:line, the entry and the key. Values Parse would default must
// already be filled in (see ApplyDefaults).
func (c *Config) Validate() error {
	if errs := c.validate(); len(errs) > 0 {
		return c.joinErrors(errs)
	}
	return nil
}

type validator struct {
	c    *Config
	errs []fieldError
}

// fail records msg at path; the line is that of the key, else of the
// nearest enclosing entry that has one.
func (v *validator) fail(path, format string, args ...any) {
	v.errs = append(v.errs, fieldError{line: v.c.lineOf(path), path: path, msg: fmt.Sprintf(format, args...)})
}

func (c *Config) lineOf(path string) int {
	for p := path; p != ""; {
		if l, ok := c.lines[p]; ok {
			return l
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return 0
}

func (c *Config) validate() []fieldError {
	v := &validator{c: c}
	if c.DataDir == "" {
		v.fail("data_dir", "must not be empty")
	}
	for i, k := range c.TrustedKeys {
		if k == "" {
			v.fail(fmt.Sprintf("trusted_keys[%d]", i), "must not be empty")
		}
	}
	v.validateApprovals(c)
	if c.Ephemeral {
		for _, k := range []string{"data_dir", "trusted_keys", "signing_key"} {
			if c.has(k) {
				v.fail(k, "not allowed with ephemeral: true, which makes a fresh data dir and key pair for each run")
			}
		}
	}
	if c.SigningKey != "" && !c.ApproveFirstSeen && c.Retention == 0 {
		v.fail("signing_key", "only allowed with approve_first_seen: true (the daemon holds no private key otherwise), or with retention, whose checkpoints it signs")
	}
	v.httpListen(c)
	v.validateStore(c)
	v.validateProxy(c)
	v.validateGateway(c)
	v.validateClassifier(c)
	v.positive("concurrency", int64(c.Concurrency))
	v.positive("unreachable_after", int64(c.UnreachableAfter))
	if c.ClientInfo.Name == "" {
		v.fail("client_info.name", "must not be empty")
	}
	if c.ClientInfo.Version == "" {
		v.fail("client_info.version", "must not be empty")
	}
	if err := checkSchedule(c.Defaults.Schedule); err != nil {
		v.fail("defaults.schedule", "%v", err)
	}
	if c.Defaults.Timeout <= 0 {
		v.fail("defaults.timeout", "must be greater than 0")
	}
	v.sandbox("defaults.sandbox", c.Defaults.Sandbox)
	v.sandboxKeys("defaults", c.Defaults.Network, c.Defaults.Egress, c.Defaults.Resources, nil)
	v.egressMode("defaults.egress_mode", c.Defaults.EgressMode)
	v.positive("limits.max_response_bytes", c.Limits.MaxResponseBytes)
	v.positive("limits.max_listing_bytes", c.Limits.MaxListingBytes)
	v.positive("limits.max_depth", int64(c.Limits.MaxDepth))
	v.positive("limits.max_tools", int64(c.Limits.MaxTools))
	v.positive("limits.max_pages", int64(c.Limits.MaxPages))
	v.positive("limits.max_string_bytes", int64(c.Limits.MaxStringBytes))
	v.positive("limits.max_stderr_bytes", int64(c.Limits.MaxStderrBytes))
	v.positive("limits.max_new_tools_per_hour", int64(c.Limits.MaxNewToolsPerHour))

	names := map[string]int{}
	for i, s := range c.Servers {
		v.server(fmt.Sprintf("servers[%d]", i), s, names, i)
	}
	channels := map[string]string{}
	for i, w := range c.Notify.Webhooks {
		v.webhook(fmt.Sprintf("notify.webhooks[%d]", i), w, channels)
	}
	for i, e := range c.Notify.Email {
		v.email(fmt.Sprintf("notify.email[%d]", i), e, channels)
	}
	return v.errs
}

// sandbox checks a sandbox mode: auto, strict or off.
func (v *validator) sandbox(path, mode string) {
	switch mode {
	case "auto", "strict", "off":
	default:
		v.fail(path, "must be auto, strict or off")
	}
}

func (v *validator) positive(path string, n int64) {
	if n <= 0 {
		v.fail(path, "must be greater than 0")
	}
}

func (v *validator) name(p, name string) bool {
	switch {
	case name == "":
		v.fail(p+".name", "is required")
	case !nameRE.MatchString(name):
		v.fail(p+".name", "must match [a-z0-9][a-z0-9._-]*")
	default:
		return true
	}
	return false
}

func (v *validator) server(p string, s Server, names map[string]int, i int) {
	if v.name(p, s.Name) {
		if first, dup := names[s.Name]; dup {
			v.fail(p+".name", "duplicate of servers[%d]", first)
		} else {
			names[s.Name] = i
		}
	}
	switch {
	case s.Command == "" && s.URL == "":
		v.fail(p, "needs command (a stdio server) or url (an http or sse server)")
	case s.Command != "" && s.URL != "":
		v.fail(p, "has both command and url; a server is one or the other")
	case s.Command != "":
		if s.Transport != TransportStdio {
			v.fail(p+".transport", "must be stdio (or left out) for a command")
		}
		if len(s.Headers) > 0 {
			v.fail(p+".headers", "only for url servers")
		}
	default:
		if err := checkURL(s.URL); err != nil {
			v.fail(p+".url", "%v", err)
		}
		if s.Transport != TransportHTTP && s.Transport != TransportSSE {
			v.fail(p+".transport", "must be http or sse for a url")
		}
		if len(s.Args) > 0 {
			v.fail(p+".args", "only for command servers")
		}
		if len(s.Env) > 0 {
			v.fail(p+".env", "only for command servers")
		}
		if s.Cwd != "" {
			v.fail(p+".cwd", "only for command servers")
		}
	}
	if s.Schedule != "" || v.c.has(p+".schedule") {
		if err := checkSchedule(s.Schedule); err != nil {
			v.fail(p+".schedule", "%v", err)
		}
	}
	if s.Timeout < 0 {
		v.fail(p+".timeout", "must be greater than 0")
	}
	if s.RevisionCheck && s.Transport == TransportSSE {
		v.fail(p+".revision_check", "not for sse: the legacy HTTP+SSE transport carries one protocol era only")
	}
	if v.c.has(p + ".sandbox") {
		if s.Command == "" {
			v.fail(p+".sandbox", "only for command servers")
		} else {
			v.sandbox(p+".sandbox", s.Sandbox)
		}
	}
	if s.Command == "" {
		for _, k := range []string{"network", "egress", "egress_mode", "resources", "mounts"} {
			if v.c.has(p + "." + k) {
				v.fail(p+"."+k, "only for command servers: it confines a server rugwatch starts")
			}
		}
	} else {
		v.sandboxKeys(p, s.Network, s.Egress, s.Resources, s.Mounts)
		v.egressMode(p+".egress_mode", s.EgressMode)
	}
	for _, k := range slices.Sorted(maps.Keys(s.Env)) {
		if !envName.MatchString(k) {
			v.fail(p+".env."+k, "not a valid environment variable name")
		}
		v.secret(p+".env."+k, s.Env[k])
	}
	v.headers(p, ServerHeaders, s.Headers)
	v.secretTransport(p, s.URL, s.Headers)
	v.integrity(p, s)
	if s.RequireTLS && strings.HasPrefix(strings.ToLower(s.URL), "http://") {
		v.fail(p+".url", "plain http:// with require_tls: true; use https://")
	} else if s.RequireTLS && s.URL == "" {
		v.fail(p+".require_tls", "only for url servers")
	}
}

// integrityRE is an npm (Subresource Integrity) hash: sha512- and the
// padded base64 of 64 bytes.
var integrityRE = regexp.MustCompile(`^sha512-[A-Za-z0-9+/]{86}==$`)

// integrity checks servers[].integrity: only where npx reports one.
func (v *validator) integrity(p string, s Server) {
	if s.Integrity == "" && !v.c.has(p+".integrity") {
		return
	}
	switch {
	case filepath.Base(s.Command) != "npx":
		v.fail(p+".integrity", "only for npx launches: it is the npm lockfile integrity of the package npx runs")
	case !integrityRE.MatchString(s.Integrity):
		v.fail(p+".integrity", "must be an npm integrity: sha512- and the base64 of 64 bytes, as in package-lock.json")
	}
}

func (v *validator) headers(p string, use HeaderUse, h map[string]Secret) {
	seen := map[string]string{}
	for _, k := range slices.Sorted(maps.Keys(h)) {
		kp := p + ".headers." + k
		if !validHeaderName(k) {
			v.fail(kp, "not a valid header name")
			continue
		}
		ck := textproto.CanonicalMIMEHeaderKey(k)
		if ReservedHeader(use, ck) {
			v.fail(kp, "set by rugwatch itself")
		}
		if other, dup := seen[ck]; dup {
			v.fail(kp, "same header as %q", other)
		}
		seen[ck] = k
		v.secret(kp, h[k])
	}
}

// secret re-checks the reference syntax, for configs built in code.
func (v *validator) secret(p string, s Secret) {
	if _, err := parseTemplate(s.tmpl); err != nil {
		v.fail(p, "%v", err)
	}
}

func (v *validator) channel(p, name string, channels map[string]string) {
	if !v.name(p, name) {
		return
	}
	if first, dup := channels[name]; dup {
		v.fail(p+".name", "duplicate of %s (channel names are unique across notify)", first)
		return
	}
	channels[name] = p
}

func (v *validator) severity(p, s string) {
	switch s {
	case "info", "warning", "critical":
	default:
		v.fail(p+".min_severity", "must be info, warning or critical")
	}
}

func (v *validator) webhook(p string, w Webhook, channels map[string]string) {
	v.channel(p, w.Name, channels)
	if err := checkURL(w.URL); err != nil {
		v.fail(p+".url", "%v", err)
	}
	if w.Secret.IsZero() && len(w.Secrets) == 0 {
		// An unsigned alert can be forged by anyone who finds the URL.
		v.fail(p+".secret", "is required: a Standard Webhooks whsec_… secret, as a ${env:} or ${file:} reference")
	}
	v.secret(p+".secret", w.Secret)
	for i, s := range w.Secrets {
		sp := fmt.Sprintf("%s.secrets[%d]", p, i)
		if s.IsZero() {
			v.fail(sp, "must not be empty")
		}
		v.secret(sp, s)
	}
	v.headers(p, WebhookHeaders, w.Headers)
	v.secretTransport(p, w.URL, w.Headers)
	v.severity(p, w.MinSeverity)
}

func (v *validator) email(p string, e Email, channels map[string]string) {
	v.channel(p, e.Name, channels)
	if e.Host == "" {
		v.fail(p+".host", "is required")
	} else if strings.ContainsAny(e.Host, " /:@\r\n") && net.ParseIP(e.Host) == nil {
		v.fail(p+".host", "must be a host name or IP address, without port")
	}
	if e.Port < 1 || e.Port > 65535 {
		v.fail(p+".port", "must be between 1 and 65535")
	}
	switch e.TLS {
	case TLSStartTLS, TLSImplicit:
	case TLSNone:
		if !IsLoopbackHost(e.Host) {
			v.fail(p+".tls", "none is only allowed for a loopback host (localhost, 127.0.0.0/8, ::1)")
		}
	default:
		v.fail(p+".tls", "must be starttls, tls or none")
	}
	if !e.Password.IsZero() && e.Username == "" {
		v.fail(p+".password", "needs a username")
	}
	v.secret(p+".password", e.Password)
	if e.From == "" {
		v.fail(p+".from", "is required")
	} else if err := checkAddress(e.From); err != nil {
		v.fail(p+".from", "%v", err)
	}
	if len(e.To) == 0 {
		v.fail(p+".to", "needs at least one address")
	}
	for i, to := range e.To {
		if err := checkAddress(to); err != nil {
			v.fail(fmt.Sprintf("%s.to[%d]", p, i), "%v", err)
		}
	}
	v.severity(p, e.MinSeverity)
}

func checkAddress(s string) error {
	if strings.ContainsAny(s, "\r\n") {
		return errors.New("must not contain a line break")
	}
	if _, err := mail.ParseAddress(s); err != nil {
		return errors.New("not an email address")
	}
	return nil
}

func checkURL(s string) error {
	if s == "" {
		return errors.New("is required")
	}
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("not a valid URL")
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return errors.New("must be http or https")
	case u.Host == "" || u.Hostname() == "":
		return errors.New("must have a host")
	case u.User != nil:
		// Credentials in a URL end up in logs; headers are references.
		return errors.New("must not contain credentials; use headers with a ${env:} or ${file:} reference")
	}
	return nil
}

func checkSchedule(s string) error {
	if s == "" {
		return errors.New("must not be empty")
	}
	if d, ok := strings.CutPrefix(s, "@every "); ok {
		dur, err := time.ParseDuration(strings.TrimSpace(d))
		if err != nil {
			return errors.New(`@every needs a duration like "@every 5m"`)
		}
		if dur < time.Second {
			return errors.New("@every needs at least 1s")
		}
	}
	if _, err := cron.ParseStandard(s); err != nil {
		return fmt.Errorf("not a cron spec or @every <duration>: %v", err)
	}
	return nil
}

func checkListen(s string) error {
	if err := checkHostPort(s); err != nil {
		return err
	}
	host, _, _ := net.SplitHostPort(s)
	if !IsLoopbackHost(host) {
		return errors.New("must be a loopback address (localhost, 127.0.0.0/8, ::1)")
	}
	return nil
}

// checkHostPort checks a listen address's shape.
func checkHostPort(s string) error {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return errors.New("must be host:port")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return errors.New("port must be a number between 0 and 65535")
	}
	return nil
}

// validHeaderName reports whether s is an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r >= 0x80 || !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
			strings.ContainsRune("!#$%&'*+-.^_`|~", r)) {
			return false
		}
	}
	return true
}

var entryPath = regexp.MustCompile(`(?s)^(servers|notify\.webhooks|notify\.email)\[(\d+)\]\.?(.*)$`)

// label turns a key path into what an error shows:
// "servers[1].headers.Authorization" → `servers[1] "remote": headers.Authorization`.
func (c *Config) label(path string) string {
	m := entryPath.FindStringSubmatch(path)
	if m == nil {
		return path
	}
	i, _ := strconv.Atoi(m[2])
	var name string
	switch m[1] {
	case "servers":
		if i < len(c.Servers) {
			name = c.Servers[i].Name
		}
	case "notify.webhooks":
		if i < len(c.Notify.Webhooks) {
			name = c.Notify.Webhooks[i].Name
		}
	case "notify.email":
		if i < len(c.Notify.Email) {
			name = c.Notify.Email[i].Name
		}
	}
	l := fmt.Sprintf("%s[%d]", m[1], i)
	if name != "" {
		l += " " + strconv.Quote(name)
	}
	if m[3] != "" {
		l += ": " + m[3]
	}
	return l
}

// position is the "file:line: " prefix of an error.
func (c *Config) position(line int) string {
	file := c.Path
	if file == "" {
		file = "config"
	}
	if line > 0 {
		return fmt.Sprintf("%s:%d: ", file, line)
	}
	return file + ": "
}

func (c *Config) format(e fieldError) string { return quoteHidden(c.formatRaw(e)) }

// quoteHidden escapes control and format characters as Go escapes (a key or schedule echoed
// from the file could otherwise break the one-error-per-line layout or hide
// text on a terminal).
func quoteHidden(s string) string {
	var b strings.Builder
	for _, r := range s {
		if unicode.IsPrint(r) && !unicode.Is(unicode.Cf, r) {
			b.WriteRune(r)
			continue
		}
		q := strconv.QuoteRuneToASCII(r)
		b.WriteString(q[1 : len(q)-1])
	}
	return b.String()
}

func (c *Config) formatRaw(e fieldError) string {
	if e.unknown != "" {
		where := "at top level"
		if e.path != "" {
			where = "in " + c.label(e.path)
		}
		return fmt.Sprintf("%sunknown key %q %s", c.position(e.line), e.unknown, where)
	}
	if e.path == "" {
		return c.position(e.line) + e.msg
	}
	return c.position(e.line) + c.label(e.path) + ": " + e.msg
}

// joinErrors orders the problems by line, those without one last.
func (c *Config) joinErrors(errs []fieldError) error {
	sort.SliceStable(errs, func(i, j int) bool {
		a, b := errs[i].line, errs[j].line
		if a == 0 || b == 0 {
			return a != 0 && b == 0
		}
		return a < b
	})
	out := make([]error, len(errs))
	for i, e := range errs {
		out[i] = errors.New(c.format(e))
	}
	return errors.Join(out...)
}

// CheckReferences resolves every secret reference once, discarding the
// values, so that a missing variable or file fails at startup with the
// entry and key that need it.
func (c *Config) CheckReferences(r Resolver) error {
	var errs []fieldError
	check := func(path string, s Secret) {
		if len(s.references()) == 0 {
			return
		}
		if _, err := s.Resolve(r); err != nil {
			// Resolve joins one error per failed reference.
			for _, line := range strings.Split(err.Error(), "\n") {
				errs = append(errs, fieldError{line: c.lineOf(path), path: path, msg: line})
			}
		}
	}
	inMap := func(p string, m map[string]Secret) {
		for _, k := range slices.Sorted(maps.Keys(m)) {
			check(p+"."+k, m[k])
		}
	}
	for i, s := range c.Servers {
		p := fmt.Sprintf("servers[%d]", i)
		inMap(p+".env", s.Env)
		inMap(p+".headers", s.Headers)
	}
	for i, w := range c.Notify.Webhooks {
		p := fmt.Sprintf("notify.webhooks[%d]", i)
		check(p+".secret", w.Secret)
		for j, s := range w.Secrets {
			check(fmt.Sprintf("%s.secrets[%d]", p, j), s)
		}
		inMap(p+".headers", w.Headers)
	}
	for i, e := range c.Notify.Email {
		check(fmt.Sprintf("notify.email[%d].password", i), e.Password)
	}
	check("http_token", c.HTTPToken)
	check("proxy.token", c.Proxy.Token)
	check("store", c.Store)
	if len(errs) > 0 {
		return c.joinErrors(errs)
	}
	return nil
}
