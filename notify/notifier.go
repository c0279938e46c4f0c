package notify

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/rugwatch/rugwatch"
)

// Notifier sends one event to one channel. retry reports whether a failure
// may succeed later (5xx, 429, network errors, SMTP 4xx); a failure with
// retry false is permanent. Errors never contain a secret.
type Notifier interface {
	Name() string
	Notify(ctx context.Context, e rugwatch.Event) (retry bool, err error)
}

// ErrGone is wrapped by the error of a webhook endpoint that answered
// 410 Gone: the receiver asked not to be called again.
var ErrGone = errors.New("endpoint is gone (HTTP 410)")

// RetryAfterError is a retryable failure whose receiver said when to come
// back (HTTP Retry-After). The dispatcher waits at least After.
type RetryAfterError struct {
	After time.Duration
	Err   error
}

func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("%v (retry after %s)", e.Err, e.After)
}

func (e *RetryAfterError) Unwrap() error { return e.Err }

// redactedMark replaces a secret found in error text.
const redactedMark = "<secret>"

// secretForms lists the strings that would give a secret away: the value
// itself, its base64 forms, and for a whsec_ secret the key after the
// prefix. Empty and one-character values are skipped: replacing them would
// shred the text without protecting anything.
func secretForms(secrets ...string) []string {
	var out []string
	add := func(s string) {
		if len(s) > 1 {
			out = append(out, s)
		}
	}
	for _, s := range secrets {
		add(s)
		add(base64.StdEncoding.EncodeToString([]byte(s)))
		add(base64.RawStdEncoding.EncodeToString([]byte(s)))
		if body, ok := strings.CutPrefix(s, "whsec_"); ok {
			add(body)
			if key, err := base64.StdEncoding.DecodeString(body); err == nil {
				add(string(key))
			}
		}
	}
	return out
}

// redact replaces every form of every secret in s.
func redact(s string, forms []string) string {
	for _, f := range forms {
		s = strings.ReplaceAll(s, f, redactedMark)
	}
	return s
}

// goneError is ErrGone with a redacted message.
type goneError struct{ msg string }

func (e *goneError) Error() string        { return e.msg }
func (e *goneError) Is(target error) bool { return target == ErrGone }

// scrub returns err unchanged if its text holds no form of a secret, and
// otherwise a new error with the redacted text that keeps only what the
// dispatcher needs (ErrGone, RetryAfterError) and drops the original chain,
// whose texts could still hold the value.
func scrub(err error, forms []string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	clean := redact(msg, forms)
	if clean == msg {
		return err
	}
	if errors.Is(err, ErrGone) {
		return &goneError{msg: clean}
	}
	var ra *RetryAfterError
	if errors.As(err, &ra) {
		return &RetryAfterError{After: ra.After, Err: errors.New(redact(ra.Err.Error(), forms))}
	}
	return errors.New(clean)
}

// TB is the part of testing.TB that AssertNoSecrets needs; taking it
// instead of testing.TB keeps the testing package out of the binary.
type TB interface {
	Helper()
	Errorf(format string, args ...any)
}

// partWindow is the length of the pieces of a secret AssertNoSecrets looks
// for, so that a truncated or split secret is caught too.
const partWindow = 10

// AssertNoSecrets fails t for every haystack (an error text, a log line, a
// stored field) that contains a secret, one of its encoded forms (base64,
// the key of a whsec_ secret) or any 10-byte piece of it (a secret cut
// short by truncation). Secrets shorter than 8 bytes are refused: they
// would match by chance.
func AssertNoSecrets(t TB, secrets []string, haystacks ...string) {
	t.Helper()
	for _, s := range secrets {
		if len(s) < 8 {
			t.Errorf("AssertNoSecrets: secret of %d bytes is too short to look for", len(s))
		}
	}
	forms := secretForms(secrets...)
	for _, s := range secrets {
		for i := 0; i+partWindow <= len(s); i++ {
			forms = append(forms, s[i:i+partWindow])
		}
	}
	for i, h := range haystacks {
		for _, f := range forms {
			if strings.Contains(h, f) {
				// Say where, never what: the test log is output too.
				t.Errorf("haystack %d (%d bytes) contains a secret or an encoding of one", i, len(h))
				break
			}
		}
	}
}
