package ops

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/store"
	"github.com/rugwatch/rugwatch/testkit/storetest"
)

// scrape serves m on /metrics and parses what a Prometheus server would.
func scrape(t testing.TB, m *Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	srv := httptest.NewServer(promhttp.HandlerFor(m.Registry(), promhttp.HandlerOpts{}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// value is the value of the series of fam whose labels include want.
func value(fams map[string]*dto.MetricFamily, fam string, want map[string]string) (float64, bool) {
	f := fams[fam]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		got := map[string]string{}
		for _, l := range m.Label {
			got[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

func TestMetricsCountAndReadTheStore(t *testing.T) {
	db := storetest.Open(t, t.TempDir(), store.Options{})
	polled := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	err := db.Update(func(tx *store.Tx) error {
		if err := tx.PutServer(store.ServerRecord{Name: "a", Reachable: true, LastPolledAt: polled, Tools: map[string]store.ToolRecord{
			"evil\u202ename": {State: rugwatch.StateDrifted}, "ok": {State: rugwatch.StateApproved}, "ok2": {State: rugwatch.StateApproved}}}); err != nil {
			return err
		}
		e := rugwatch.Event{Type: rugwatch.EventToolDrifted, Severity: rugwatch.SeverityCritical, Server: "a", Tool: "evil\u202ename"}
		if err := tx.AppendEvent(&e); err != nil {
			return err
		}
		if err := tx.EnqueueDelivery(store.Delivery{ID: store.DeliveryID(e.ID, "webhook:ops"), EventID: e.ID, EventSeq: e.Seq, Channel: "webhook:ops"}); err != nil {
			return err
		}
		return tx.DisableChannel(store.DisabledChannel{Channel: "webhook:gone"})
	})
	if err != nil {
		t.Fatal(err)
	}
	m := NewMetrics(StoreSource{DB: db, Watching: func() int { return 2 }}, BuildInfo{Version: "v1.2.3", Revision: "abc", GoVersion: "go1.26.8"})
	m.Polled("a", 150*time.Millisecond, "ok")
	m.Polled("a", time.Second, "error")
	m.Event(rugwatch.Event{Type: rugwatch.EventToolDrifted, Severity: rugwatch.SeverityCritical, Tool: "evil\u202ename"})
	m.Attempted("webhook:ops", "retry")
	m.Proxy().SessionStarted("a")
	m.Proxy().Refused("a", "made up by a server")
	m.Proxy().Refused("a", RefusedNotApproved)

	fams := scrape(t, m)
	checks := []struct {
		fam    string
		labels map[string]string
		want   float64
	}{
		{"rugwatch_polls_total", map[string]string{"server": "a", "result": "ok"}, 1},
		{"rugwatch_polls_total", map[string]string{"server": "a", "result": "error"}, 1},
		{"rugwatch_poll_duration_seconds", map[string]string{"result": "ok"}, 1},
		{"rugwatch_tools", map[string]string{"server": "a", "state": "drifted"}, 1},
		{"rugwatch_tools", map[string]string{"server": "a", "state": "approved"}, 2},
		{"rugwatch_events_total", map[string]string{"type": "tool.drifted", "severity": "critical"}, 1},
		{"rugwatch_outbox_deliveries", map[string]string{"channel": "webhook:ops", "state": "pending"}, 1},
		{"rugwatch_alert_channel_disabled", map[string]string{"channel": "webhook:gone"}, 1},
		{"rugwatch_alert_deliveries_total", map[string]string{"channel": "webhook:ops", "outcome": "retry"}, 1},
		{"rugwatch_watch_sessions", nil, 2},
		{"rugwatch_proxy_sessions", map[string]string{"server": "a"}, 1},
		{"rugwatch_proxy_refused_calls_total", map[string]string{"server": "a", "reason": "other"}, 1},
		{"rugwatch_proxy_refused_calls_total", map[string]string{"server": "a", "reason": "not_approved"}, 1},
		{"rugwatch_server_reachable", map[string]string{"server": "a"}, 1},
		{"rugwatch_servers", nil, 1},
		{"rugwatch_build_info", map[string]string{"version": "v1.2.3", "revision": "abc", "goversion": "go1.26.8"}, 1},
	}
	for _, c := range checks {
		if got, ok := value(fams, c.fam, c.labels); !ok || got != c.want {
			t.Errorf("%s%v = %v (found %v), want %v", c.fam, c.labels, got, ok, c.want)
		}
	}
	if got, _ := value(fams, "rugwatch_last_successful_poll_timestamp_seconds", map[string]string{"server": "a"}); got < float64(polled.Unix()) {
		t.Errorf("last successful poll %v, want at least %d", got, polled.Unix())
	}
	// No label anywhere carries a tool name (server-chosen text).
	for name, f := range fams {
		for _, mm := range f.Metric {
			for _, l := range mm.Label {
				if l.GetName() == "tool" || strings.Contains(l.GetValue(), "evil") {
					t.Errorf("%s has label %s=%q", name, l.GetName(), l.GetValue())
				}
			}
		}
	}
}

func TestServerLabelsStopAtTheBound(t *testing.T) {
	m := NewMetrics(StoreSource{}, BuildInfo{})
	for i := range MaxServers + 5 {
		m.Polled(fmt.Sprintf("s%05d", i), time.Millisecond, "ok")
	}
	fams := scrape(t, m)
	if n := len(fams["rugwatch_polls_total"].Metric); n != MaxServers+1 {
		t.Errorf("%d poll series, want %d (the bound and _other)", n, MaxServers+1)
	}
	if got, _ := value(fams, "rugwatch_polls_total", map[string]string{"server": overflowServer}); got != 5 {
		t.Errorf("_other counted %v polls, want 5", got)
	}
}

// BenchmarkScrape10kServers50Tools measures one /metrics scrape over a
// store of DESIGN.md's scale: 10,000 servers of 50 tools, 10,000 queued
// deliveries. The first scrape decodes every record; later ones decode
// only records written since (here, 1 in 20: a 5-minute schedule
// scraped every 15 s).
func BenchmarkScrape10kServers50Tools(b *testing.B) {
	db := storetest.Open(b, b.TempDir(), store.Options{})
	def, _ := json.Marshal(map[string]any{"name": "add", "description": strings.Repeat("Adds two numbers together. ", 8),
		"inputSchema": map[string]any{"type": "object", "properties": map[string]any{"a": map[string]any{"type": "number"}, "b": map[string]any{"type": "number"}}}})
	digest := rugwatch.Digest("sha256:" + strings.Repeat("0", 64))
	record := func(i int, at time.Time) store.ServerRecord {
		r := store.ServerRecord{Name: fmt.Sprintf("srv-%05d", i), Transport: "http", Reachable: true, LastPolledAt: at, Tools: map[string]store.ToolRecord{}}
		for j := range 50 {
			n := fmt.Sprintf("tool%02d", j)
			r.Tools[n] = store.ToolRecord{State: rugwatch.StateApproved, ObservedDigest: digest, ApprovedDigest: digest, Definition: def}
		}
		return r
	}
	for batch := range 10 {
		if err := db.Update(func(tx *store.Tx) error {
			for i := batch * 1000; i < (batch+1)*1000; i++ {
				if err := tx.PutServer(record(i, time.Now())); err != nil {
					return err
				}
				e := rugwatch.Event{Type: rugwatch.EventToolNew, Severity: rugwatch.SeverityInfo, Server: fmt.Sprintf("srv-%05d", i)}
				if err := tx.AppendEvent(&e); err != nil {
					return err
				}
				if err := tx.EnqueueDelivery(store.Delivery{ID: store.DeliveryID(e.ID, "log"), EventID: e.ID, EventSeq: e.Seq, Channel: "log"}); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}
	m := NewMetrics(StoreSource{DB: db}, BuildInfo{})
	start := time.Now()
	if _, err := m.Registry().Gather(); err != nil {
		b.Fatal(err)
	}
	first := time.Since(start)
	b.ResetTimer()
	for n := 0; b.Loop(); n++ {
		b.StopTimer()
		if err := db.Update(func(tx *store.Tx) error {
			for i := range 500 {
				if err := tx.PutServer(record((n*500+i)%10000, time.Now())); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		fams, err := m.Registry().Gather()
		if err != nil || len(fams) == 0 {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(first.Milliseconds()), "first-scrape-ms")
}
