package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/configs"
	"github.com/rugwatch/rugwatch/visible"
)

// WebhookTimeout bounds one webhook attempt, connect to last byte.
const WebhookTimeout = 15 * time.Second

// A failed response's body goes into the error, errBodyLimit bytes of it
// at most. More is read first, so that a secret the receiver echoes is
// redacted whole before the cut: cutting first could leave a prefix of
// it that no longer matches.
const (
	errBodyLimit = 256
	errBodyRead  = 8 << 10
)

// Webhook posts events to a Standard Webhooks endpoint.
type Webhook struct {
	Config   configs.Webhook
	Resolver configs.Resolver
	// Client sends the requests; nil means one with WebhookTimeout that
	// never follows a redirect. A custom client should not follow them
	// either: the signed request is for this URL only.
	Client *http.Client
	// Now stamps webhook-timestamp; nil means time.Now.
	Now func() time.Time
}

// Name is "webhook:<name>".
func (w *Webhook) Name() string { return "webhook:" + w.Config.Name }

var defaultWebhookClient = &http.Client{
	Timeout: WebhookTimeout,
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

// Notify posts e, signed with every configured secret. 2xx is success;
// 5xx, 429 and network errors are retryable (with a *RetryAfterError when
// the receiver says when); 410 is ErrGone; anything else is permanent.
func (w *Webhook) Notify(ctx context.Context, e rugwatch.Event) (bool, error) {
	// Everything resolved lands in forms, so that whatever fails below
	// can be scrubbed of it.
	var forms []string
	retry, err := w.notify(ctx, e, &forms)
	if err != nil {
		err = fmt.Errorf("%s: %w", w.Name(), err)
	}
	return retry, scrub(err, forms)
}

func (w *Webhook) notify(ctx context.Context, e rugwatch.Event, forms *[]string) (bool, error) {
	body, err := Payload(e)
	if err != nil {
		return false, err
	}
	now := time.Now
	if w.Now != nil {
		now = w.Now
	}
	ts := now().Unix()

	var sigs []string
	for i, s := range append([]configs.Secret{w.Config.Secret}, w.Config.Secrets...) {
		if s.IsZero() {
			continue
		}
		v, err := s.Resolve(w.Resolver)
		if err != nil {
			return false, fmt.Errorf("resolve signing secret %d: %w", i, err)
		}
		*forms = append(*forms, secretForms(v)...)
		sig, err := Sign(v, e.ID, ts, body)
		if err != nil {
			return false, fmt.Errorf("sign with secret %d: %w", i, err)
		}
		sigs = append(sigs, sig)
	}

	u, err := url.Parse(w.Config.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return false, errors.New("url is not an http(s) URL")
	}
	// The path and query of a webhook URL are often a token; errors name
	// the host only.
	host := u.Host

	ctx, cancel := context.WithTimeout(ctx, WebhookTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.Config.URL, bytes.NewReader(body))
	if err != nil {
		return false, errors.New("build request: invalid URL")
	}
	// Sorted so that a refusal names the same header on every attempt.
	for _, name := range slices.Sorted(maps.Keys(w.Config.Headers)) {
		canon := textproto.CanonicalMIMEHeaderKey(name)
		if configs.ReservedHeader(configs.WebhookHeaders, canon) {
			return false, fmt.Errorf("header %s is set by rugwatch itself", canon)
		}
		v, err := w.Config.Headers[name].Resolve(w.Resolver)
		if err != nil {
			return false, fmt.Errorf("resolve header %s: %w", canon, err)
		}
		*forms = append(*forms, secretForms(v)...)
		if strings.ContainsAny(v, "\r\n\x00") {
			return false, fmt.Errorf("header %s: value contains a line break or NUL", canon)
		}
		req.Header.Set(name, v)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "rugwatch")
	req.Header.Set("webhook-id", e.ID)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
	if len(sigs) > 0 {
		req.Header.Set("webhook-signature", strings.Join(sigs, " "))
	}

	client := w.Client
	if client == nil {
		client = defaultWebhookClient
	}
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its text repeats the whole URL
		}
		return true, fmt.Errorf("post to %s: %w", host, err)
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, errBodyRead))
	// Drain a little more so the connection can be reused, but never wait
	// on an endless body.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))

	code := resp.StatusCode
	if code >= 200 && code < 300 {
		return false, nil
	}
	status := fmt.Sprintf("post to %s: HTTP %d", host, code)
	// Redact before escaping too: visible.Line would rewrite a secret
	// holding a backslash or a control character past recognition.
	if s := strings.TrimSpace(redact(string(snippet), *forms)); s != "" {
		status += ": " + visible.Bounded(s, errBodyLimit)
	}
	switch {
	case code == http.StatusGone:
		return false, fmt.Errorf("%w: %s", ErrGone, status)
	case code == http.StatusTooManyRequests || code >= 500:
		err := errors.New(status)
		if after, ok := retryAfter(resp.Header.Get("Retry-After"), now()); ok {
			return true, &RetryAfterError{After: after, Err: err}
		}
		return true, err
	case code >= 300 && code < 400:
		return false, fmt.Errorf("%s (redirects are not followed; configure the final URL)", status)
	}
	return false, errors.New(status)
}

// retryAfter parses a Retry-After value: delay seconds or an HTTP date.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		return time.Duration(min(secs, int64(7*24*time.Hour/time.Second))) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// Sign returns the Standard Webhooks signature "v1,<base64 HMAC-SHA256>"
// of "id.timestamp.body" under secret ("whsec_" + base64 key; the prefix
// is optional). The error never quotes the secret.
func Sign(secret, id string, ts int64, body []byte) (string, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil || len(key) == 0 {
		return "", errors.New("webhook secret is not whsec_ followed by base64")
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id))
	mac.Write([]byte{'.'})
	mac.Write([]byte(strconv.FormatInt(ts, 10)))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil)), nil
}
