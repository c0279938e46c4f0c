package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/rugwatch/rugwatch/configs"
	"github.com/rugwatch/rugwatch/demo"
	"github.com/rugwatch/rugwatch/mcpclient"
	"github.com/rugwatch/rugwatch/monitor"
	"github.com/rugwatch/rugwatch/sandbox"
	"github.com/rugwatch/rugwatch/signatures"
	"github.com/rugwatch/rugwatch/store"
)

// Exit codes of DESIGN.md.
const (
	exitClean    = 0 // everything observed is approved, every server reached
	exitFindings = 1 // pending, drifted, revoked, removed, unreachable, tampered
	exitError    = 2 // usage or operational error
)

// App is the whole CLI; tests run it in-process.
type App struct {
	Stdin     io.Reader
	Stdout    io.Writer
	Stderr    io.Writer
	LookupEnv func(string) (string, bool)

	configPath string
	logLevel   string
	logFormat  string
	log        *slog.Logger

	// ready, when set, is called once serve is serving (tests).
	ready func(*daemon)
	// pruned, when set, hears of every retention pass of serve (tests).
	pruned func(monitor.Pruned, error)
	// lockPassed, when set, hears of every approvals_from pass of serve
	// (tests).
	lockPassed func(monitor.LockPass, error)
	// lockEvery, when set, replaces how often serve stats approvals_from
	// (tests: an hour, so that only SIGHUP or a poll reads it).
	lockEvery time.Duration
	// hashes caches executables' digests for launch identities.
	hashes mcpclient.HashCache
	// verified caches approval signatures that held, for the proxy's
	// frequent reads of what may pass.
	verified monitor.VerifiedCache
	// policy is the approval policy of policyOf, built once per config
	// (the daemon builds a Ledger per request; key files are not read
	// again for each).
	policyMu sync.Mutex
	policyOf *configs.Config
	policy   *signatures.Policy
	// sightings is what this process's polls saw, for the proxy's
	// cloaking check (serve's proxy_listen shares it with the fleet).
	sightings monitor.Sightings
	// notices is the warnings on tool results recorded in the last hour:
	// one daemon records each once an hour for all the sessions it serves.
	notices monitor.Notices
}

// usagef is a mistake in how rugwatch was called; it says what to type.
func usagef(format string, args ...any) error {
	return &monitor.UsageError{Msg: fmt.Sprintf(format, args...)}
}

// findingsError makes a command exit 1 after printing its result.
var errFindings = errors.New("findings")

// Run runs one command line and returns the exit code.
func (a *App) Run(ctx context.Context, args []string) int {
	if a.LookupEnv == nil {
		a.LookupEnv = os.LookupEnv
	}
	fs := flag.NewFlagSet("rugwatch", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&a.configPath, "config", "", "")
	fs.StringVar(&a.logLevel, "log-level", "info", "")
	fs.StringVar(&a.logFormat, "log-format", "auto", "")
	version := fs.Bool("version", false, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(a.Stdout, usage())
			return exitClean
		}
		fmt.Fprintf(a.Stderr, "rugwatch: %v\n\n%s", err, usage())
		return exitError
	}
	log, err := newLogger(a.Stderr, a.logFormat, a.logLevel, a.LookupEnv)
	if err != nil {
		fmt.Fprintf(a.Stderr, "rugwatch: %v\n", err)
		return exitError
	}
	a.log = log
	rest := fs.Args()
	if *version {
		rest = []string{"version"}
	}
	if len(rest) == 0 {
		fmt.Fprint(a.Stderr, usage())
		return exitError
	}
	cmd, cargs := rest[0], rest[1:]
	switch cmd {
	case "demo-server":
		return demo.Run(ctx, cargs, a.Stdin, a.Stdout, a.Stderr)
	case "help", "-h", "--help":
		if _, ok := lookupCommand(firstOf(cargs)); !ok {
			fmt.Fprint(a.Stdout, usage())
			return exitClean
		}
		// `rugwatch help approve` is `rugwatch approve --help`.
		cmd, cargs = cargs[0], []string{"--help"}
	case "--version":
		cmd = "version"
	}
	c, ok := lookupCommand(cmd)
	if !ok {
		fmt.Fprintf(a.Stderr, "rugwatch: unknown command %q; run `rugwatch help` for the list\n", cmd)
		return exitError
	}
	if c.subs && len(cargs) > 0 && isHelpArg(cargs[0]) {
		printCommandHelp(a.Stdout, c, nil)
		return exitClean
	}
	err = c.run(a, ctx, cargs)
	var help *helpRequest
	if errors.As(err, &help) {
		printCommandHelp(a.Stdout, c, help.fs)
		return exitClean
	}
	switch {
	case err == nil:
		return exitClean
	case errors.Is(err, errFindings):
		return exitFindings
	default:
		// Usage errors say what to type instead; both exit 2.
		fmt.Fprintf(a.Stderr, "rugwatch %s: %v\n", cmd, err)
		return exitError
	}
}

func firstOf(args []string) string {
	if len(args) == 0 {
		return ""
	}
	return args[0]
}

// newFlags returns a flag set for one subcommand whose errors are usage
// errors that say what to type.
func (a *App) newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	// The global flags work after the command too: `rugwatch serve
	// --config FILE` reads as naturally as `rugwatch --config FILE serve`,
	// and `check --log-level debug` as `--log-level debug check`.
	fs.StringVar(&a.configPath, "config", a.configPath, "config file")
	fs.Var(logFlag{a, &a.logLevel}, "log-level", "log level")
	fs.Var(logFlag{a, &a.logFormat}, "log-format", "log format")
	return fs
}

// parse parses flags anywhere on the line: `approve srv tool --yes` works
// as well as `approve --yes srv tool`. Everything after a "--" is taken as
// it stands: `scan -- npx -y pkg` hands "-y" to npx, not to rugwatch.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, &helpRequest{fs}
			}
			return nil, usagef("%v (see `rugwatch %s --help`)", err, fs.Name())
		}
		rest := fs.Args()
		// The flag package drops the "--" that ends its parsing; whether it
		// was there shows in what it consumed.
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		if rest[0] == "--" {
			return append(pos, rest[1:]...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// config loads the config from --config, $RUGWATCH_CONFIG or ./rugwatch.yaml.
func (a *App) config() (*configs.Config, error) {
	cfg, err := configs.Load(a.configFile())
	if err != nil {
		return nil, err
	}
	return cfg, nil
}

// configFile is the config's path: --config, else $RUGWATCH_CONFIG, else
// ./rugwatch.yaml.
func (a *App) configFile() string {
	if a.configPath != "" {
		return a.configPath
	}
	if v, ok := a.LookupEnv("RUGWATCH_CONFIG"); ok && v != "" {
		return v
	}
	return "rugwatch.yaml"
}

// openStore opens the store of cfg: its PostgreSQL database when it
// names one (store:), else the bbolt file in data_dir, where a store held
// by `serve` fails at once with ErrLocked rather than hang. The DSN is
// resolved here, for the open, and kept nowhere.
func (a *App) openStore(cfg *configs.Config) (*store.DB, error) {
	if cfg.Shared() {
		dsn, err := cfg.Store.Resolve(a.resolver())
		if err != nil {
			return nil, fmt.Errorf("opening store: %s: store: %w", cfg.Path, err)
		}
		db, err := store.OpenPostgres(dsn, store.Options{})
		if err != nil {
			return nil, fmt.Errorf("opening store: %w", err)
		}
		return db, nil
	}
	db, err := store.Open(filepath.Join(cfg.DataDir, "rugwatch.db"), store.Options{})
	if err != nil {
		return nil, fmt.Errorf("opening store: %w", err)
	}
	return db, nil
}

// verifier loads the trusted public keys of cfg. The daemon and the read
// commands never need a private key.
func (a *App) verifier(cfg *configs.Config) (*signatures.Verifier, error) {
	keys, err := signatures.LoadPublicKeys(cfg.TrustedKeys)
	if err != nil {
		return nil, fmt.Errorf("loading trusted keys (run `rugwatch init` to create one): %w", err)
	}
	if quorumOverOne(cfg) {
		// A quorum counts each key once: one key under two paths would
		// pass the config's count and never meet the quorum.
		seen := map[string]int{}
		for i, k := range keys {
			if j, ok := seen[k.ID]; ok {
				return nil, fmt.Errorf("%s: trusted_keys[%d] (%s) and trusted_keys[%d] (%s) are the same key %s; a quorum counts it once",
					cfg.Path, j, cfg.TrustedKeys[j], i, cfg.TrustedKeys[i], k.ID)
			}
			seen[k.ID] = i
		}
	}
	return signatures.NewVerifier(keys), nil
}

// quorumOverOne reports whether any approval in cfg needs more than one
// signature.
func quorumOverOne(cfg *configs.Config) bool {
	if cfg.Approvals.Quorum > 1 {
		return true
	}
	for _, s := range cfg.Servers {
		if s.Approvals.Quorum > 1 {
			return true
		}
	}
	return false
}

// resolver resolves secret references against the App's environment.
func (a *App) resolver() configs.Resolver {
	return configs.Resolver{LookupEnv: a.LookupEnv, ReadFile: os.ReadFile}
}

// target resolves one configured server into something to dial. Secrets
// exist only in the returned value, for the length of one poll.
func (a *App) target(cfg *configs.Config, s configs.Server) (mcpclient.Target, error) {
	t := mcpclient.Target{Name: s.Name, Transport: s.Transport, Command: s.Command, Args: s.Args, Cwd: s.Cwd, URL: s.URL}
	// The sandbox is an allow-list: the server sees the system, its own
	// code, its own HOME and what its mounts grant. Hide names what must
	// stay covered even where a grant would show it: what the config
	// names (data dir with store, keys and control socket; the config;
	// every ${file:} secret) and the approver's key wherever it lives.
	t.Sandbox = mcpclient.Sandbox{
		Mode: sandbox.Mode(s.Sandbox), Hide: append([]string(nil), s.SandboxHide...),
		Home: cfg.ServerHome(s.Name), Mounts: s.SandboxMounts(),
		Network: s.EffectiveNetwork(cfg.Defaults), Egress: s.EffectiveEgress(cfg.Defaults),
		Resources: s.EffectiveResources(cfg.Defaults),
		// What the launcher fetches the server from is pinned by the
		// launch identity, not by behaviour pinning.
		EgressExempt: configs.LauncherEgress(s.Command, s.Env),
		EgressPinned: s.EffectiveEgressMode(cfg.Defaults) == configs.EgressPinned,
	}
	if i := slices.IndexFunc(cfg.Servers, func(o configs.Server) bool { return o.Name == s.Name }); i >= 0 {
		key := cfg.EgressKey(i)
		t.Sandbox.Allow = func(string) string { return key }
	}
	t.Integrity = s.Integrity
	if v, ok := a.LookupEnv("RUGWATCH_KEY"); ok && v != "" {
		t.Sandbox.Hide = append(t.Sandbox.Hide, v)
	}
	if v, ok := a.LookupEnv("XDG_CONFIG_HOME"); ok && v != "" {
		t.Sandbox.Hide = append(t.Sandbox.Hide, filepath.Join(v, "rugwatch"))
	} else if home, err := os.UserHomeDir(); err == nil {
		t.Sandbox.Hide = append(t.Sandbox.Hide, filepath.Join(home, ".config", "rugwatch"))
	}
	if t.Command == "@self" {
		// The bundled demo runs this very executable, so it works from
		// `go run` without anything installed.
		exe, err := os.Executable()
		if err != nil {
			return t, fmt.Errorf("server %s: finding this executable for @self: %w", s.Name, err)
		}
		t.Command = exe
	}
	r := a.resolver()
	if len(s.Env) > 0 {
		t.Env = make(map[string]string, len(s.Env))
		for k, v := range s.Env {
			val, err := v.Resolve(r)
			if err != nil {
				return t, fmt.Errorf("server %s: env.%s: %w", s.Name, k, err)
			}
			t.Env[k] = val
		}
	}
	if len(s.Headers) > 0 {
		t.Headers = make(map[string]string, len(s.Headers))
		for k, v := range s.Headers {
			val, err := v.Resolve(r)
			if err != nil {
				return t, fmt.Errorf("server %s: headers.%s: %w", s.Name, k, err)
			}
			t.Headers[k] = val
		}
	}
	return t, nil
}

func (a *App) dialOptions(cfg *configs.Config) mcpclient.DialOptions {
	l := cfg.Limits
	return mcpclient.DialOptions{
		Hashes:     &a.hashes,
		ClientInfo: mcpclient.ClientInfo{Name: cfg.ClientInfo.Name, Version: cfg.ClientInfo.Version},
		Limits: mcpclient.Limits{
			MaxResponseBytes: l.MaxResponseBytes, MaxListingBytes: l.MaxListingBytes, MaxDepth: l.MaxDepth, MaxTools: l.MaxTools,
			MaxPages: l.MaxPages, MaxStringBytes: l.MaxStringBytes, MaxStderrBytes: l.MaxStderrBytes,
		},
	}
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}
