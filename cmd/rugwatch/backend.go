package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"time"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/configs"
	"github.com/rugwatch/rugwatch/control"
	"github.com/rugwatch/rugwatch/detect"
	"github.com/rugwatch/rugwatch/mcpclient"
	"github.com/rugwatch/rugwatch/monitor"
	"github.com/rugwatch/rugwatch/notify"
	"github.com/rugwatch/rugwatch/sandbox"
	"github.com/rugwatch/rugwatch/store"
)

// session is the backend one command talks to, and what to release after.
type session struct {
	control.Backend
	close func() error
}

func (s session) Close() error { return s.close() }

func socketPath(cfg *configs.Config) string { return filepath.Join(cfg.DataDir, "rugwatch.sock") }

// backend returns the daemon's control socket when serve runs, else a
// Ledger over the store opened here. polling says whether the command
// polls (check), which needs the servers resolved and perhaps a signer.
func (a *App) backend(ctx context.Context, polling bool) (session, error) {
	cfg, err := a.config()
	if err != nil {
		return session{}, err
	}
	if c, ok := control.Dial(ctx, socketPath(cfg)); ok {
		return session{Backend: c, close: c.Close}, nil
	}
	ver, err := a.verifier(cfg)
	if err != nil {
		return session{}, err
	}
	db, err := a.openStore(cfg)
	if err != nil {
		return session{}, err
	}
	al, err := notify.NewAlerting(cfg, a.resolver(), a.log)
	if err != nil {
		db.Close()
		return session{}, err
	}
	l := a.ledger(cfg, db, ver, al)
	l.AfterWrite = func(ctx context.Context) error {
		// What was recorded stands whether or not its alerts went out:
		// they stay queued for the next run of serve or check (`rugwatch
		// alerts` lists them), so the command still prints its report
		// and exits by the states it saw; the pending alerts are a
		// warning, not a reason to print nothing.
		if err := al.Dispatcher(db).Drain(ctx, a.drainBound()); err != nil {
			fmt.Fprintf(a.Stderr, "rugwatch: warning: %v\n", err)
		}
		return nil
	}
	if polling {
		rec, err := a.recorder(cfg, db, ver, al)
		if err != nil {
			db.Close()
			return session{}, err
		}
		p := a.poller(cfg, rec)
		l.Poll = func(ctx context.Context, names []string) error {
			specs, err := a.specs(cfg, names)
			if err != nil {
				return err
			}
			return p.PollAll(ctx, specs, cfg.Concurrency)
		}
	}
	return session{Backend: l, close: db.Close}, nil
}

// defaultDrainBound is how long a one-shot command (check, approve,
// revoke) spends delivering the alerts it queued before it leaves the
// rest to the next run.
const defaultDrainBound = 2 * time.Minute

// drainBound is $RUGWATCH_ALERT_DRAIN_TIMEOUT (a Go duration) if set and
// valid, else defaultDrainBound: a CI job may not want to wait minutes
// for a slow receiver, and the alerts are not lost either way.
func (a *App) drainBound() time.Duration {
	if v, ok := a.LookupEnv("RUGWATCH_ALERT_DRAIN_TIMEOUT"); ok {
		if d, err := time.ParseDuration(v); err == nil && d > 0 {
			return d
		}
		// "30" (no unit) or "-1s" would otherwise quietly mean two
		// minutes to a CI job that asked for less.
		fmt.Fprintf(a.Stderr, "rugwatch: warning: RUGWATCH_ALERT_DRAIN_TIMEOUT=%q is not a positive Go duration (such as 30s); using %s\n", v, defaultDrainBound)
	}
	return defaultDrainBound
}

// ledger is the state machine's human side over db, for cfg.
func (a *App) ledger(cfg *configs.Config, db *store.DB, ver monitor.Verifier, al *notify.Alerting) *monitor.Ledger {
	refs := make([]monitor.ServerRef, len(cfg.Servers))
	for i, s := range cfg.Servers {
		refs[i] = monitor.ServerRef{Name: s.Name, Transport: s.Transport}
	}
	return &monitor.Ledger{DB: db, Verifier: ver, Policy: a.approvalPolicy(cfg), Servers: refs, Where: cfg.Path, InTx: al.InTx, TestChannels: al.TestChannels, Verified: &a.verified, Sightings: &a.sightings, Notices: &a.notices}
}

// recorder is the state machine's poll side over db, for cfg. With
// approve_first_seen it holds the one private key the daemon may hold.
func (a *App) recorder(cfg *configs.Config, db *store.DB, ver monitor.Verifier, al *notify.Alerting) (*monitor.Recorder, error) {
	rec := &monitor.Recorder{DB: db, Verifier: ver, Policy: a.approvalPolicy(cfg), Verified: &a.verified, UnreachableAfter: cfg.UnreachableAfter, InTx: al.InTx, Log: a.log}
	rec.MaxNewToolsPerHour = cfg.Limits.MaxNewToolsPerHour
	rec.ConfigFindings = configFindings(cfg)
	if cl := a.classifier(cfg); cl != nil {
		rec.Classify = func(server string, t mcpclient.Tool) []rugwatch.Finding {
			var def struct {
				Description string `json:"description"`
			}
			if json.Unmarshal(t.Canonical, &def) != nil || def.Description == "" {
				return nil
			}
			return cl.Classify(context.Background(), monitor.ClassifyRequest{Kind: "description", Server: server, Tool: t.Name,
				Path: "/description", Text: def.Description})
		}
	}
	if cfg.ApproveFirstSeen {
		key := cfg.SigningKey
		if key == "" {
			key = a.approverKeyPath(cfg, "")
		}
		s, err := loadSigner(key, a.keyPassword)
		if err != nil {
			return nil, err
		}
		rec.Signer = s
	}
	return rec, nil
}

// configFindings gives, per server, what its configuration alone raises:
// the package spec of an npx/uvx/bunx/pipx launch, unpinned or one edit
// from a well-known server, flagged before any poll and whether or not
// the launch succeeds.
func configFindings(cfg *configs.Config) func(server string) []rugwatch.Finding {
	found := map[string][]rugwatch.Finding{}
	for _, s := range cfg.Servers {
		if s.Command != "" {
			found[s.Name] = detect.PackageFindings(s.Command, s.Args)
		}
	}
	return func(server string) []rugwatch.Finding { return found[server] }
}

func (a *App) poller(cfg *configs.Config, rec *monitor.Recorder) *monitor.Poller {
	return &monitor.Poller{Recorder: rec, Opts: a.dialOptions(cfg), Log: a.log}
}

// specs turns the named configured servers (all if none) into what the
// monitor polls. The Ledger has checked the names against the config.
func (a *App) specs(cfg *configs.Config, names []string) ([]monitor.ServerSpec, error) {
	servers := cfg.Servers
	if len(names) > 0 {
		// A check names every server: looking each up in the list was
		// 50 million comparisons at 10,000.
		byName := make(map[string]int, len(cfg.Servers))
		for i, s := range cfg.Servers {
			byName[s.Name] = i
		}
		servers = make([]configs.Server, len(names))
		for i, n := range names {
			at, ok := byName[n]
			if !ok {
				return nil, fmt.Errorf("no server %q in %s", n, cfg.Path)
			}
			servers[i] = cfg.Servers[at]
		}
	}
	out := make([]monitor.ServerSpec, len(servers))
	for i, s := range servers {
		out[i] = monitor.ServerSpec{
			Name: s.Name, Transport: s.Transport, Schedule: s.EffectiveSchedule(cfg.Defaults),
			Timeout: s.EffectiveTimeout(cfg.Defaults), Watch: s.Watch, RevisionCheck: s.RevisionCheck, Key: cfg.ServerKey(s),
			Resolve: func() (mcpclient.Target, error) { return a.target(cfg, s) },
		}
	}
	return out, nil
}

// classifier is the config's external classifier, run sandboxed with the
// same hide list as a stdio server; nil when none is configured.
func (a *App) classifier(cfg *configs.Config) *monitor.Classifier {
	c := &cfg.Classifier
	if !c.Enabled() {
		return nil
	}
	hide := cfg.ReferencedPaths()
	if dir, err := a.keyDir(); err == nil {
		hide = append(hide, dir)
	}
	return &monitor.Classifier{Command: c.Command, Timeout: c.EffectiveTimeout(), OnError: c.OnError, Log: a.log,
		Sandbox: mcpclient.Sandbox{Mode: sandbox.Mode(cfg.Defaults.Sandbox), Hide: hide,
			Network: (configs.Server{}).EffectiveNetwork(cfg.Defaults), Egress: cfg.Defaults.Egress,
			Resources: (configs.Server{}).EffectiveResources(cfg.Defaults)}}
}
