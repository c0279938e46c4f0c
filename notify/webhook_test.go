package notify

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rugwatch/rugwatch/configs"
)

func TestWebhookSignsExactBytesWithEverySecret(t *testing.T) {
	rcv := newReceiver(t, []string{testSecretA, testSecretB}, status(204))
	w := &Webhook{
		Config: configs.Webhook{Name: "ops", URL: rcv.URL(),
			Secret:  secret(t, "${env:WH_A}"),
			Secrets: []configs.Secret{secret(t, "${env:WH_B}")},
			Headers: map[string]configs.Secret{"Authorization": secret(t, "Bearer ${env:TOKEN}")}},
		Resolver: env(map[string]string{"WH_A": testSecretA, "WH_B": testSecretB, "TOKEN": "tok-123456"}),
		Now:      func() time.Time { return time.Unix(1614265330, 0) },
	}
	e := driftEvent()
	retry, err := w.Notify(context.Background(), e)
	if err != nil || retry {
		t.Fatalf("Notify = %v, %v", retry, err)
	}
	got := rcv.deliveries()
	if len(got) != 1 {
		t.Fatalf("%d requests", len(got))
	}
	d := got[0]
	if d.ID != e.ID || d.Timestamp != "1614265330" {
		t.Errorf("webhook-id %q timestamp %q", d.ID, d.Timestamp)
	}
	if d.ValidSigs != 2 {
		t.Errorf("%d of 2 rotation secrets verified; header %q", d.ValidSigs, d.Header.Get("webhook-signature"))
	}
	if sig := d.Header.Get("webhook-signature"); len(strings.Fields(sig)) != 2 {
		t.Errorf("signature header %q, want two space-separated signatures", sig)
	}
	if d.Header.Get("Authorization") != "Bearer tok-123456" {
		t.Errorf("custom header not sent")
	}
	want, _ := Payload(e)
	if string(d.Body) != string(want) {
		t.Errorf("body is not the payload:\n%s", d.Body)
	}
}

func TestWebhookStatusClassification(t *testing.T) {
	cases := []struct {
		code       int
		header     http.Header
		retry      bool
		gone       bool
		retryAfter time.Duration
	}{
		{code: 200},
		{code: 202},
		{code: 500, retry: true},
		{code: 503, retry: true, header: http.Header{"Retry-After": {"120"}}, retryAfter: 2 * time.Minute},
		{code: 429, retry: true, header: http.Header{"Retry-After": {"Thu, 26 Nov 2026 00:10:00 GMT"}}, retryAfter: 10 * time.Minute},
		{code: 429, retry: true, header: http.Header{"Retry-After": {"soon"}}},
		{code: 400},
		{code: 401},
		{code: 404},
		{code: 410, gone: true},
		{code: 302, header: http.Header{"Location": {"http://127.0.0.1:1/elsewhere"}}},
	}
	now := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	for _, c := range cases {
		rcv := newReceiver(t, nil, func(int) (int, http.Header) { return c.code, c.header })
		w := &Webhook{Config: configs.Webhook{Name: "ops", URL: rcv.URL()}, Now: func() time.Time { return now }}
		retry, err := w.Notify(context.Background(), driftEvent())
		ok := c.code >= 200 && c.code < 300
		if ok != (err == nil) || retry != c.retry {
			t.Errorf("HTTP %d: retry=%v err=%v", c.code, retry, err)
			continue
		}
		if errors.Is(err, ErrGone) != c.gone {
			t.Errorf("HTTP %d: errors.Is(ErrGone) = %v", c.code, !c.gone)
		}
		var ra *RetryAfterError
		if got := errors.As(err, &ra); got != (c.retryAfter > 0) || (got && ra.After != c.retryAfter) {
			t.Errorf("HTTP %d %v: RetryAfterError %+v", c.code, c.header, ra)
		}
		if n := len(rcv.deliveries()); n != 1 {
			t.Errorf("HTTP %d: %d requests (redirect followed?)", c.code, n)
		}
		if err != nil && !strings.Contains(err.Error(), "webhook:ops") {
			t.Errorf("error does not name the channel: %v", err)
		}
	}
}

func TestWebhookNetworkErrorRetriesWithoutURLPath(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL + "/T0KEN-IN-PATH?key=abc123"
	srv.Close() // nothing listens any more
	w := &Webhook{Config: configs.Webhook{Name: "ops", URL: url}}
	retry, err := w.Notify(context.Background(), driftEvent())
	if err == nil || !retry {
		t.Fatalf("refused connection: retry=%v err=%v", retry, err)
	}
	if strings.Contains(err.Error(), "T0KEN") || strings.Contains(err.Error(), "abc123") {
		t.Errorf("error repeats the URL's path or query: %v", err)
	}
}

func TestWebhookErrorBodyIsBoundedAndVisible(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(400)
		_, _ = w.Write([]byte("bad\r\nX-Forged: 1\x1b[2J" + strings.Repeat("A", 10000)))
	}))
	defer srv.Close()
	w := &Webhook{Config: configs.Webhook{Name: "ops", URL: srv.URL}}
	_, err := w.Notify(context.Background(), driftEvent())
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	if strings.ContainsAny(msg, "\r\n\x1b") || len(msg) > 600 {
		t.Errorf("error carries raw or unbounded response text (%d bytes): %q", len(msg), msg)
	}
}

func TestWebhookRefusesReservedHeaderAndBadSecret(t *testing.T) {
	rcv := newReceiver(t, nil, status(200))
	w := &Webhook{Config: configs.Webhook{Name: "ops", URL: rcv.URL(),
		Headers: map[string]configs.Secret{"webhook-signature": secret(t, "v1,forged")}}}
	if retry, err := w.Notify(context.Background(), driftEvent()); err == nil || retry {
		t.Errorf("reserved header: retry=%v err=%v", retry, err)
	}
	w = &Webhook{Config: configs.Webhook{Name: "ops", URL: rcv.URL(), Secret: secret(t, "${env:MISSING}")}, Resolver: env(nil)}
	_, err := w.Notify(context.Background(), driftEvent())
	if err == nil || !strings.Contains(err.Error(), "${env:MISSING}") {
		t.Errorf("missing secret: %v", err)
	}
	if n := len(rcv.deliveries()); n != 0 {
		t.Errorf("%d requests sent despite configuration errors", n)
	}
}

func TestRetryAfterParse(t *testing.T) {
	now := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"0": 0, "30": 30 * time.Second, "Thu, 26 Nov 2026 00:00:30 GMT": 30 * time.Second,
		"Wed, 25 Nov 2026 00:00:00 GMT": 0,
	} {
		got, ok := retryAfter(v, now)
		if !ok || got != want {
			t.Errorf("retryAfter(%q) = %v, %v; want %v", v, got, ok, want)
		}
	}
	for _, v := range []string{"", "-5", "tomorrow"} {
		if _, ok := retryAfter(v, now); ok {
			t.Errorf("retryAfter(%q) accepted", v)
		}
	}
}
