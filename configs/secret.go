package configs

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"unicode"

	"go.yaml.in/yaml/v3"
)

// redacted is how every Secret prints, whatever it holds.
const redacted = "<secret>"

// Secret is a string that may contain ${env:NAME} and ${file:PATH}
// references, whole or embedded ("Bearer ${file:/run/secrets/token}").
// "$${" stands for a literal "${". It is kept exactly as written and
// resolved only by Resolve, at the moment of use. A relative PATH is taken
// against the directory of the config file the Secret was loaded from.
//
// Every printing path (fmt verbs, JSON, YAML, text, slog) yields "<secret>",
// even for a literal with no references, because headers and passwords are
// often written inline.
type Secret struct {
	tmpl string // as written
	dir  string // base for relative ${file:} paths; "" means the working directory
}

// NewSecret checks the reference syntax of template and returns it as a
// Secret. The error never quotes template.
func NewSecret(template string) (Secret, error) {
	if _, err := parseTemplate(template); err != nil {
		return Secret{}, err
	}
	return Secret{tmpl: template}, nil
}

// Template returns the Secret as written, references unresolved. It is meant
// for tests and validation; do not log it, a literal secret is returned as is.
func (s Secret) Template() string { return s.tmpl }

// IsZero reports whether the Secret is empty.
func (s Secret) IsZero() bool { return s.tmpl == "" }

// String implements fmt.Stringer.
func (s Secret) String() string { return redacted }

// GoString implements fmt.GoStringer.
func (s Secret) GoString() string { return redacted }

// Format implements fmt.Formatter so that no verb (%d, %x, %+v…) can reach
// the fields.
func (s Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// MarshalText implements encoding.TextMarshaler.
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// MarshalJSON implements json.Marshaler.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(redacted) }

// MarshalYAML implements yaml.Marshaler.
func (s Secret) MarshalYAML() (any, error) { return redacted, nil }

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// UnmarshalYAML implements yaml.Unmarshaler: any scalar, references checked
// for syntax, nothing resolved.
func (s *Secret) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return errors.New("must be a string")
	}
	if n.Tag == "!!null" {
		*s = Secret{}
		return nil
	}
	if _, err := parseTemplate(n.Value); err != nil {
		return err
	}
	*s = Secret{tmpl: n.Value}
	return nil
}

// Resolver looks references up. A nil field falls back to os.LookupEnv or
// os.ReadFile, so the zero value resolves against the real environment.
type Resolver struct {
	LookupEnv func(string) (string, bool)
	ReadFile  func(string) ([]byte, error)
}

// DefaultResolver resolves against the process environment and file system.
func DefaultResolver() Resolver {
	return Resolver{LookupEnv: os.LookupEnv, ReadFile: os.ReadFile}
}

// Resolve substitutes every reference and returns the result. The value is
// not kept anywhere. Errors name the reference (`${env:SMTP_PASSWORD}: not
// set`) and never the value or the literal parts of the template. An empty
// variable or file is an error too: an empty credential is always a mistake.
// A file's content loses one trailing newline ("\n" or "\r\n").
func (s Secret) Resolve(r Resolver) (string, error) {
	parts, err := parseTemplate(s.tmpl)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	var errs []error
	for _, p := range parts {
		switch p.kind {
		case partLiteral:
			b.WriteString(p.text)
		case partEnv:
			v, err := r.lookupEnv(p)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			b.WriteString(v)
		case partFile:
			v, err := r.readFile(p, s.dir)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			b.WriteString(v)
		}
	}
	if len(errs) > 0 {
		return "", errors.Join(errs...)
	}
	return b.String(), nil
}

// references lists the references of s as written ("${env:X}"), for errors
// and checks.
func (s Secret) references() []string {
	parts, _ := parseTemplate(s.tmpl)
	var refs []string
	for _, p := range parts {
		if p.kind != partLiteral {
			refs = append(refs, p.ref())
		}
	}
	return refs
}

func (r Resolver) lookupEnv(p part) (string, error) {
	lookup := r.LookupEnv
	if lookup == nil {
		lookup = os.LookupEnv
	}
	v, ok := lookup(p.text)
	if !ok {
		return "", &RefError{Ref: p.ref(), msg: "not set"}
	}
	if v == "" {
		return "", &RefError{Ref: p.ref(), msg: "set but empty"}
	}
	return v, nil
}

func (r Resolver) readFile(p part, dir string) (string, error) {
	read := r.ReadFile
	if read == nil {
		read = os.ReadFile
	}
	path := p.text
	if !filepath.IsAbs(path) && dir != "" {
		path = filepath.Join(dir, path)
	}
	data, err := read(path)
	if err != nil {
		// The underlying error is kept for errors.Is but not printed: a
		// custom reader's message is not ours to trust.
		msg := "cannot read"
		switch {
		case errors.Is(err, fs.ErrNotExist):
			msg = "no such file"
		case errors.Is(err, fs.ErrPermission):
			msg = "permission denied"
		case errors.Is(err, syscall.EISDIR):
			msg = "is a directory"
		}
		return "", &RefError{Ref: p.ref(), msg: msg, err: err}
	}
	v := string(data)
	if t, ok := strings.CutSuffix(v, "\r\n"); ok {
		v = t
	} else {
		v = strings.TrimSuffix(v, "\n")
	}
	if v == "" {
		return "", &RefError{Ref: p.ref(), msg: "file is empty"}
	}
	return v, nil
}

// RefError says why a reference could not be resolved. Its text is the
// reference as written and a fixed reason, never a value.
type RefError struct {
	Ref string // "${env:NAME}" or "${file:PATH}"
	msg string
	err error
}

func (e *RefError) Error() string { return e.Ref + ": " + e.msg }

// Unwrap exposes the underlying error (for example fs.ErrNotExist).
func (e *RefError) Unwrap() error { return e.err }

type partKind int

const (
	partLiteral partKind = iota
	partEnv
	partFile
)

type part struct {
	kind partKind
	text string // literal text, variable name or path
}

func (p part) ref() string {
	if p.kind == partEnv {
		return "${env:" + p.text + "}"
	}
	return "${file:" + p.text + "}"
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// errMalformed never quotes the template: it may be a literal secret.
var errMalformed = errors.New("malformed reference: want ${env:NAME} or ${file:PATH} (write $${ for a literal ${)")

func parseTemplate(t string) ([]part, error) {
	var parts []part
	var lit strings.Builder
	for i := 0; i < len(t); {
		if strings.HasPrefix(t[i:], "$${") {
			lit.WriteString("${")
			i += 3
			continue
		}
		if !strings.HasPrefix(t[i:], "${") {
			lit.WriteByte(t[i])
			i++
			continue
		}
		end := strings.IndexByte(t[i:], '}')
		if end < 0 {
			return nil, errMalformed
		}
		body := t[i+2 : i+end]
		var p part
		switch {
		case strings.HasPrefix(body, "env:"):
			p = part{kind: partEnv, text: body[len("env:"):]}
			if !envName.MatchString(p.text) {
				return nil, errMalformed
			}
		case strings.HasPrefix(body, "file:"):
			p = part{kind: partFile, text: body[len("file:"):]}
			if p.text == "" || strings.ContainsFunc(p.text, unicode.IsControl) {
				return nil, errMalformed
			}
		default:
			return nil, errMalformed
		}
		if lit.Len() > 0 {
			parts = append(parts, part{kind: partLiteral, text: lit.String()})
			lit.Reset()
		}
		parts = append(parts, p)
		i += end + 1
	}
	if lit.Len() > 0 {
		parts = append(parts, part{kind: partLiteral, text: lit.String()})
	}
	return parts, nil
}
