package notify

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rugwatch/rugwatch/configs"
	"github.com/rugwatch/rugwatch/store"
)

// Known secret values for the leak tests.
const (
	leakWebhookSecret = testSecretB
	leakHeaderValue   = "Bearer hdr-7c1e9a55d0"
	leakSMTPPassword  = "smtp-pw-0b8f3e21"
)

var leakSecrets = []string{leakWebhookSecret, leakHeaderValue, leakSMTPPassword}

var leakEnv = env(map[string]string{
	"WH_SECRET": leakWebhookSecret, "WH_AUTH": leakHeaderValue, "SMTP_PASSWORD": leakSMTPPassword,
})

// echoServer is a hostile webhook receiver: it fails and puts every
// request header it got into its response body.
func echoServer(t *testing.T, code int) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(code)
		for k, v := range r.Header {
			fmt.Fprintf(w, "%s=%s;", k, strings.Join(v, ","))
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// echoSMTP rejects AUTH with a reply quoting the password it was sent.
func echoSMTP(t *testing.T) *smtpServer {
	s := startSMTP(t, smtpSTARTTLS, "rugwatch", "not-the-one", nil)
	s.authEcho = true
	return s
}

func leakyWebhook(t *testing.T, url string) *Webhook {
	return &Webhook{Config: configs.Webhook{Name: "ops", URL: url,
		Secret:  secret(t, "${env:WH_SECRET}"),
		Headers: map[string]configs.Secret{"Authorization": secret(t, "${env:WH_AUTH}")}}, Resolver: leakEnv}
}

func leakyEmail(t *testing.T, s *smtpServer) *Email {
	cfg := s.emailConfig(configs.TLSStartTLS)
	cfg.Username = "rugwatch"
	cfg.Password = secret(t, "${env:SMTP_PASSWORD}")
	return &Email{Config: cfg, Resolver: leakEnv, TLSConfig: s.tlsClientConfig()}
}

// No failing send lets a secret out: not in the returned errors, not in a
// log line, not in a stored delivery or event.
func TestNoSecretLeaks(t *testing.T) {
	noLeaks(t)
	var haystacks []string

	// Direct sends, each failing in its own way.
	for _, code := range []int{400, 401, 500, 410} {
		_, err := leakyWebhook(t, echoServer(t, code).URL).Notify(context.Background(), driftEvent())
		if err == nil || !strings.Contains(err.Error(), redactedMark) {
			t.Errorf("HTTP %d: echoed secrets not redacted (or no error): %v", code, err)
		}
		if code == 410 && !errors.Is(err, ErrGone) {
			t.Error("redaction lost ErrGone")
		}
		haystacks = append(haystacks, err.Error())
	}
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	_, err := leakyWebhook(t, dead.URL).Notify(context.Background(), driftEvent())
	haystacks = append(haystacks, err.Error())

	smtpSrv := echoSMTP(t)
	retry, err := leakyEmail(t, smtpSrv).Notify(context.Background(), driftEvent())
	if err == nil || retry || !strings.Contains(err.Error(), redactedMark) {
		t.Errorf("SMTP AUTH echo: retry=%v err=%v", retry, err)
	}
	haystacks = append(haystacks, err.Error())

	// Unresolvable references name the reference only.
	broken := leakyWebhook(t, dead.URL)
	broken.Resolver = env(nil)
	_, err = broken.Notify(context.Background(), driftEvent())
	haystacks = append(haystacks, err.Error())

	// The same failures through the dispatcher, with logs captured.
	db := openStore(t)
	good := newReceiver(t, []string{testSecretA}, status(200))
	e := record(t, db, driftEvent(), "webhook:ops", "email:security", "webhook:good")
	r := startDispatcher(t, db, tiny, nil,
		leakyWebhook(t, echoServer(t, 400).URL), leakyEmail(t, smtpSrv), webhook(t, "good", good.URL()))
	r.eventually(t, "webhook dead", stateIs(t, db, e.ID, "webhook:ops", store.DeliveryDead))
	r.eventually(t, "email dead", stateIs(t, db, e.ID, "email:security", store.DeliveryDead))
	r.eventually(t, "reports delivered", func() bool { return len(good.deliveries()) == 3 })
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	haystacks = append(haystacks, r.logs.String())
	for _, d := range good.deliveries() {
		haystacks = append(haystacks, string(d.Body))
	}
	if err := db.View(func(tx *store.Tx) error {
		all, err := tx.ListDeliveries("", 0)
		if err != nil {
			return err
		}
		for _, d := range all {
			haystacks = append(haystacks, d.LastError)
		}
		events, err := tx.Events("", 0)
		for _, ev := range events {
			haystacks = append(haystacks, ev.Message)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	AssertNoSecrets(t, leakSecrets, haystacks...)
	if !strings.Contains(strings.Join(haystacks, "\n"), "${env:WH_SECRET}") {
		t.Error("resolution failure does not name the reference")
	}
}

// recorder is a TB that keeps failures instead of failing.
type recorder struct{ failures []string }

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.failures = append(r.failures, fmt.Sprintf(format, args...))
}

func TestAssertNoSecretsFindsEncodings(t *testing.T) {
	for name, hay := range map[string]string{
		"raw":        "x " + leakSMTPPassword + " y",
		"base64":     base64.StdEncoding.EncodeToString([]byte(leakSMTPPassword)),
		"whsec key":  strings.TrimPrefix(leakWebhookSecret, "whsec_"),
		"raw header": "Authorization=" + leakHeaderValue,
		"truncated":  "Authorization=" + leakHeaderValue[:len(leakHeaderValue)-4] + "…",
	} {
		r := &recorder{}
		AssertNoSecrets(r, leakSecrets, "clean", hay)
		if len(r.failures) != 1 {
			t.Errorf("%s: %d failures, want 1", name, len(r.failures))
		}
		for _, f := range r.failures {
			for _, s := range leakSecrets {
				if strings.Contains(f, s) {
					t.Errorf("%s: the failure message repeats the secret", name)
				}
			}
		}
	}
	r := &recorder{}
	AssertNoSecrets(r, []string{"short"}, "nothing")
	if len(r.failures) != 1 {
		t.Error("a too-short secret was accepted")
	}
}

// Secret values print as <secret> however a notifier's config is printed.
func TestNotifierConfigPrintsNoSecret(t *testing.T) {
	w := leakyWebhook(t, "http://127.0.0.1:1/")
	m := &Email{Config: configs.Email{Password: secret(t, leakSMTPPassword)}}
	AssertNoSecrets(t, leakSecrets, fmt.Sprintf("%v %+v %#v", w, w, w), fmt.Sprintf("%v %+v", m, m))
}
