package ops

import (
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/store"
)

// MaxServers bounds the per-server series: DESIGN.md's scale is 10,000
// servers, and a config beyond it must not grow the scrape without end.
// Servers past the bound are counted under the server label "_other".
const MaxServers = 10_000

// overflowServer is the server label of everything past MaxServers.
const overflowServer = "_other"

// BuildInfo is what rugwatch_build_info says about the binary.
type BuildInfo struct {
	Version, Revision, GoVersion string
}

// Metrics is rugwatch's Prometheus registry: counters the daemon's parts
// feed through the observer interfaces they declare, and gauges read from
// the store at scrape time (tool states, outbox depth), which cannot drift
// from what the store says.
type Metrics struct {
	reg *prometheus.Registry

	polls        *prometheus.CounterVec
	pollDuration *prometheus.HistogramVec
	events       *prometheus.CounterVec
	deliveries   *prometheus.CounterVec
	proxy        *Proxy
	cluster      *cluster

	mu      sync.Mutex
	servers map[string]bool      // server labels handed out, at most MaxServers
	lastOK  map[string]time.Time // last successful poll, by server label
}

// StoreSource is what the scrape-time collector reads: the store, and how
// many watch sessions run (nil for none).
type StoreSource struct {
	DB       *store.DB
	Watching func() int
}

// NewMetrics registers every rugwatch metric, the Go runtime's and the
// process's.
func NewMetrics(src StoreSource, build BuildInfo) *Metrics {
	m := &Metrics{
		reg:     prometheus.NewRegistry(),
		servers: map[string]bool{},
		lastOK:  map[string]time.Time{},
		polls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rugwatch_polls_total",
			Help: "Polls of a server's tools/list, by result: ok, error (the server failed it) or record_error (the store did not take it).",
		}, []string{"server", "result"}),
		// No server label: 10,000 servers times a dozen buckets would be
		// the largest thing in the scrape. The per-server picture is
		// rugwatch_last_successful_poll_timestamp_seconds.
		pollDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "rugwatch_poll_duration_seconds",
			Help:    "Duration of one poll, connect to last page, by result.",
			Buckets: []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"result"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rugwatch_events_total",
			Help: "Events recorded by polls, watch sessions and proxy sessions, by type and severity.",
		}, []string{"type", "severity"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rugwatch_alert_deliveries_total",
			Help: "Alert delivery attempts by channel and outcome: delivered, retry, dead or disabled (410 Gone).",
		}, []string{"channel", "outcome"}),
	}
	m.proxy = newProxy(m)
	m.cluster = newCluster()
	m.reg.MustRegister(m.cluster.collectors()...)
	m.reg.MustRegister(m.polls, m.pollDuration, m.events, m.deliveries,
		m.proxy.sessions, m.proxy.refused,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&storeCollector{src: src, m: m},
	)
	bi := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "rugwatch_build_info",
		Help:        "The running binary: module version, VCS revision, Go version. Always 1.",
		ConstLabels: prometheus.Labels{"version": build.Version, "revision": build.Revision, "goversion": build.GoVersion},
	})
	bi.Set(1)
	m.reg.MustRegister(bi)
	return m
}

// Handler serves /metrics; a store that cannot be read fails its own
// series, not the whole scrape.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Registry is what /metrics serves.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Proxy is the part of the metrics the proxy feeds.
func (m *Metrics) Proxy() *Proxy { return m.proxy }

// server is the label for a server name: the name itself for the first
// MaxServers names seen, overflowServer after.
func (m *Metrics) server(name string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.servers[name] {
		return name
	}
	if len(m.servers) >= MaxServers {
		return overflowServer
	}
	m.servers[name] = true
	return name
}

// Polled implements monitor.PollObserver.
func (m *Metrics) Polled(server string, took time.Duration, result string) {
	label := m.server(server)
	m.polls.WithLabelValues(label, result).Inc()
	m.pollDuration.WithLabelValues(result).Observe(took.Seconds())
	if result == "ok" {
		m.mu.Lock()
		m.lastOK[label] = time.Now()
		m.mu.Unlock()
	}
}

// Event counts one recorded event (feed it from monitor.Poller.OnEvent
// and monitor.Observed.OnEvent).
func (m *Metrics) Event(e rugwatch.Event) {
	m.events.WithLabelValues(string(e.Type), string(e.Severity)).Inc()
}

// Attempted implements notify.DeliveryObserver.
func (m *Metrics) Attempted(channel, outcome string) {
	m.deliveries.WithLabelValues(channel, outcome).Inc()
}

// Proxy counts the enforcing proxy's sessions and refused calls. Its
// methods are safe to call from any goroutine; a nil *Proxy ignores them.
type Proxy struct {
	m        *Metrics
	sessions *prometheus.GaugeVec
	refused  *prometheus.CounterVec
}

// Reasons a proxy refuses a call; anything else is counted as "other", so
// that no free text becomes a label. The proxy's own list (proxy.Refused*)
// holds the same values; a proxy test feeds each through Refused and
// fails on one counted as "other".
const (
	RefusedNotApproved       = "not_approved"       // the tool is pending, drifted, revoked or removed
	RefusedUnknownTool       = "unknown_tool"       // never listed
	RefusedInvalidArgs       = "invalid_arguments"  // fails the approved input schema
	RefusedBlockedResult     = "blocked_result"     // proxy.results: block withheld a result
	RefusedNoApprovalsRead   = "no_approvals"       // fail closed: approvals could not be read
	RefusedIdentityDrifted   = "identity_drifted"   // the server's pinned launch or remote identity drifted
	RefusedArgumentInjection = "argument_injection" // the arguments carry injected text (proxy.results: block)
	RefusedExfiltration      = "exfiltration_chain" // the arguments carry a secret a flagged result brought
)

func newProxy(m *Metrics) *Proxy {
	return &Proxy{
		m: m,
		sessions: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rugwatch_proxy_sessions",
			Help: "Client sessions the enforcing proxy holds open, by server.",
		}, []string{"server"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rugwatch_proxy_refused_calls_total",
			Help: "tools/call requests the proxy refused, by server and reason.",
		}, []string{"server", "reason"}),
	}
}

// SessionStarted counts a client session of server as open.
func (p *Proxy) SessionStarted(server string) {
	if p != nil {
		p.sessions.WithLabelValues(p.m.server(server)).Inc()
	}
}

// SessionEnded counts it closed again.
func (p *Proxy) SessionEnded(server string) {
	if p != nil {
		p.sessions.WithLabelValues(p.m.server(server)).Dec()
	}
}

// Refused counts one refused call, reason one of the Refused constants.
func (p *Proxy) Refused(server, reason string) {
	if p == nil {
		return
	}
	switch reason {
	case RefusedNotApproved, RefusedUnknownTool, RefusedInvalidArgs, RefusedBlockedResult, RefusedNoApprovalsRead,
		RefusedIdentityDrifted, RefusedArgumentInjection, RefusedExfiltration:
	default:
		reason = "other"
	}
	p.refused.WithLabelValues(p.m.server(server), reason).Inc()
}

// storeCollector reads the gauges from the store at scrape time, in one
// read transaction.
type storeCollector struct {
	src   StoreSource
	m     *Metrics
	cache store.SummaryCache
}

var (
	descTools = prometheus.NewDesc("rugwatch_tools",
		"Tools by server and state (approved, pending, drifted, revoked, removed); states with no tool are left out.",
		[]string{"server", "state"}, nil)
	descServers = prometheus.NewDesc("rugwatch_servers",
		"Servers in the store, every one counted even past the per-server series bound.", nil, nil)
	descUp = prometheus.NewDesc("rugwatch_server_reachable",
		"1 when the server's last poll reached it, else 0.", []string{"server"}, nil)
	descLastOK = prometheus.NewDesc("rugwatch_last_successful_poll_timestamp_seconds",
		"When the server was last polled successfully, Unix time.", []string{"server"}, nil)
	descOutbox = prometheus.NewDesc("rugwatch_outbox_deliveries",
		"Alert deliveries in the outbox by channel and state (pending, dead).", []string{"channel", "state"}, nil)
	descDisabled = prometheus.NewDesc("rugwatch_alert_channel_disabled",
		"1 for an alert channel a 410 Gone disabled, until `rugwatch alerts enable`.", []string{"channel"}, nil)
	descWatch = prometheus.NewDesc("rugwatch_watch_sessions",
		"Watch sessions open now.", nil, nil)
)

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descTools, descServers, descUp, descLastOK, descOutbox, descDisabled, descWatch} {
		ch <- d
	}
}

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	if c.src.Watching != nil {
		ch <- prometheus.MustNewConstMetric(descWatch, prometheus.GaugeValue, float64(c.src.Watching()))
	}
	if c.src.DB == nil {
		return
	}
	var (
		sums     []store.ServerSummary
		total    int
		outbox   []store.OutboxCount
		disabled []store.DisabledChannel
	)
	err := c.src.DB.View(func(tx *store.Tx) error {
		var err error
		if sums, total, err = tx.ServerSummaries(&c.cache, MaxServers); err != nil {
			return err
		}
		if outbox, err = tx.OutboxCounts(); err != nil {
			return err
		}
		disabled, err = tx.DisabledChannels()
		return err
	})
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descServers, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(descServers, prometheus.GaugeValue, float64(total))
	c.m.mu.Lock()
	lastOK := make(map[string]time.Time, len(c.m.lastOK))
	for k, v := range c.m.lastOK {
		lastOK[k] = v
	}
	c.m.mu.Unlock()
	for _, s := range sums {
		for st, n := range s.States {
			ch <- prometheus.MustNewConstMetric(descTools, prometheus.GaugeValue, float64(n), s.Name, string(st))
		}
		up := 0.0
		if s.Reachable {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, up, s.Name)
		// The store knows the last success while the server is reachable
		// (it survives a restart); after a failure only this process's
		// memory does.
		last := lastOK[s.Name]
		if s.Reachable && s.LastPolledAt.After(last) {
			last = s.LastPolledAt
		}
		if !last.IsZero() {
			ch <- prometheus.MustNewConstMetric(descLastOK, prometheus.GaugeValue, float64(last.UnixNano())/1e9, s.Name)
		}
	}
	for _, o := range outbox {
		ch <- prometheus.MustNewConstMetric(descOutbox, prometheus.GaugeValue, float64(o.N), o.Channel, o.State)
	}
	for _, d := range disabled {
		ch <- prometheus.MustNewConstMetric(descDisabled, prometheus.GaugeValue, 1, d.Channel)
	}
}
