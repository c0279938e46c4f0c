package notify

import (
	"log/slog"
	"slices"
	"testing"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/configs"
)

const routeYAML = `
notify:
  webhooks:
    - name: ops
      url: https://hooks.example.com/rugwatch
      secret: "${env:RUGWATCH_WEBHOOK_SECRET}"
      min_severity: critical
    - name: audit
      url: https://audit.example.com/in
      secret: "${env:AUDIT_SECRET}"
      min_severity: info
  email:
    - name: security
      host: smtp.example.com
      username: rugwatch
      password: "${env:SMTP_PASSWORD}"
      from: rugwatch@example.com
      to: [security@example.com]
`

func TestChannelsAndRoute(t *testing.T) {
	cfg, err := configs.Parse([]byte(routeYAML), "")
	if err != nil {
		t.Fatal(err)
	}
	ns, err := Channels(cfg, configs.Resolver{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range ns {
		names = append(names, n.Name())
	}
	if want := []string{"log", "webhook:ops", "webhook:audit", "email:security"}; !slices.Equal(names, want) {
		t.Errorf("channels %v, want %v", names, want)
	}
	if m := ByName(ns); len(m) != 4 || m["email:security"] != ns[3] {
		t.Errorf("ByName %v", m)
	}
	infos := ChannelInfos(cfg)
	for sev, want := range map[rugwatch.Severity][]string{
		rugwatch.SeverityInfo:     {"log", "webhook:audit"},
		rugwatch.SeverityWarning:  {"log", "webhook:audit", "email:security"}, // email defaults to warning
		rugwatch.SeverityCritical: {"log", "webhook:ops", "webhook:audit", "email:security"},
	} {
		if got := Route(infos, rugwatch.Event{Severity: sev}); !slices.Equal(got, want) {
			t.Errorf("Route(%s) = %v, want %v", sev, got, want)
		}
	}
	if _, err := Channels(cfg, configs.Resolver{}, nil); err == nil {
		t.Error("nil logger accepted")
	}
}
