package mcpclient

import (
	"encoding/base64"
	"net/url"
	"strings"
)

// A server chooses much of the text of a poll error: its stderr, its
// JSON-RPC error messages. One that echoes its API key or the
// Authorization header it was sent would put a resolved secret into logs,
// the store and alerts. Every error leaving a poll is therefore scrubbed
// of the values its target was configured with.

// minSecretLen keeps short, common values (a "1", "info") from garbling
// every message they happen to appear in.
const minSecretLen = 6

// secretValues lists the resolved env and header values of t, and the
// words of each header value ("Bearer <token>").
func (t Target) secretValues() []string {
	var out []string
	add := func(v string) {
		if len(v) >= minSecretLen {
			out = append(out, v)
		}
	}
	for _, v := range t.Env {
		add(v)
	}
	for _, v := range t.Headers {
		add(v)
		for _, w := range strings.Fields(v) {
			add(w)
		}
	}
	return out
}

// scrubText replaces every secret, also base64- and URL-encoded, with
// <secret>.
func scrubText(s string, secrets []string) string {
	for _, v := range secrets {
		for _, form := range []string{v, base64.StdEncoding.EncodeToString([]byte(v)), url.QueryEscape(v)} {
			if len(form) >= minSecretLen {
				s = strings.ReplaceAll(s, form, "<secret>")
			}
		}
	}
	return s
}

// scrubbedError keeps the error chain for errors.As and errors.Is but
// prints the scrubbed text.
type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }

// scrubErr scrubs err of t's configured values.
func scrubErr(t Target, err error) error {
	if err == nil {
		return nil
	}
	secrets := t.secretValues()
	if len(secrets) == 0 {
		return err
	}
	msg := scrubText(err.Error(), secrets)
	if msg == err.Error() {
		return err
	}
	return &scrubbedError{msg: msg, err: err}
}
