package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

// command is one subcommand: what runs it and what `rugwatch help` and
// `rugwatch COMMAND --help` say of it. The one table feeds the dispatch
// and both helps, so a command cannot exist without its help.
type command struct {
	name     string
	run      func(*App, context.Context, []string) error
	args     string   // what follows the name: "SERVER [TOOL…]"
	summary  string   // one line for `rugwatch help`
	examples []string // at least one, shown by COMMAND --help
	// subs is set for a command whose first argument is a subcommand
	// with flags of its own (keys): its --help lists them.
	subs bool
}

// commands lists every subcommand in the order `rugwatch help` shows
// them. demo-server parses its own flags (package demo) and is
// dispatched before this table.
var commands = []command{
	{name: "init", run: (*App).runInit, summary: "create the data dir, store, an approver key pair and the listeners' token",
		examples: []string{"rugwatch --config /etc/rugwatch/rugwatch.yaml init"}},
	{name: "serve", run: (*App).runServe, summary: "the daemon: schedules, watch sessions, control socket, listeners",
		examples: []string{"rugwatch serve --config /etc/rugwatch/rugwatch.yaml --log-level debug"}},
	{name: "check", run: (*App).runCheck, args: "[SERVER…]", summary: "poll now, record, print states (--format text|json|sarif)",
		examples: []string{"rugwatch check", "rugwatch check everything --format sarif > rugwatch.sarif"}},
	{name: "status", run: (*App).runStatus, args: "[SERVER…]", summary: "last known states, no polling (--format text|json|sarif)",
		examples: []string{"rugwatch status --json"}},
	{name: "diff", run: (*App).runDiff, args: "SERVER [TOOL]", summary: "field-level diff, approved vs observed",
		examples: []string{"rugwatch diff everything echo"}},
	{name: "approve", run: (*App).runApprove, args: "SERVER [TOOL…]", summary: "review and sign (--all, --digest D, --accept-findings, --launch, --instructions)",
		examples: []string{"rugwatch approve everything --all", "rugwatch approve everything echo --digest sha256:…",
			"rugwatch approve everything --launch"}},
	{name: "revoke", run: (*App).runRevoke, args: "SERVER [TOOL…]", summary: "withdraw approvals (--all, --reason R)",
		examples: []string{`rugwatch revoke everything echo --reason "vendor compromised"`}},
	{name: "history", run: (*App).runHistory, args: "[SERVER]", summary: "events, newest first (--limit N)",
		examples: []string{"rugwatch history everything --limit 20"}},
	{name: "verify", run: (*App).runVerify, summary: "check every approval signature and the event chain (--head SEQ:HEAD)",
		examples: []string{"rugwatch verify", "rugwatch verify --head 42:sha256:…"}},
	{name: "scan", run: (*App).runScan, args: "URL | -- CMD ARGS…", summary: "one-shot listing of one server, no config or store (--format, --sse)",
		examples: []string{"rugwatch scan https://mcp.example.com/mcp", "rugwatch scan -- npx -y @modelcontextprotocol/server-everything"}},
	{name: "keys", run: (*App).runKeys, args: "generate|list|export", summary: "approver keys", subs: true,
		examples: []string{"rugwatch keys generate --dir ./keys", "rugwatch keys list", "rugwatch keys export --key ./keys/approver.key"}},
	{name: "lock", run: (*App).runLock, args: "export|verify|sign", summary: "approvals as a reviewed file in git (rugwatch.lock.json)", subs: true,
		examples: []string{"rugwatch lock export --out rugwatch.lock.json", "rugwatch lock sign rugwatch.lock.json", "rugwatch lock verify rugwatch.lock.json --live"}},
	{name: "alerts", run: (*App).runAlerts, args: "[test [CHANNEL] | retry ID | enable CHANNEL]", summary: "alert deliveries: pending, dead, delivered",
		examples: []string{"rugwatch alerts", "rugwatch alerts test ops"}},
	{name: "backup", run: (*App).runBackup, args: "FILE", summary: "a verified copy of the store, also while serve runs",
		examples: []string{"rugwatch backup /var/backups/rugwatch.db"}},
	{name: "store", run: (*App).runStore, args: "migrate", summary: "move the bbolt store into PostgreSQL, verified (migrate --to DSN)", subs: true,
		examples: []string{`rugwatch store migrate --to '${file:/run/secrets/rugwatch_dsn}'`, "rugwatch store migrate --to postgres://rugwatch@db.internal/rugwatch"}},
	{name: "discover", run: (*App).runDiscover, summary: "print your MCP clients' servers as servers: YAML (--install CLIENT)",
		examples: []string{"rugwatch discover", "rugwatch discover --install claude-desktop"}},
	{name: "proxy", run: (*App).runProxy, args: "SERVER | --all", summary: "stdio MCP proxy: only approved tools reach the client; --all is the gateway of every server",
		examples: []string{"rugwatch --config /etc/rugwatch/rugwatch.yaml proxy everything", "rugwatch --config /etc/rugwatch/rugwatch.yaml proxy --all"}},
	{name: "version", run: (*App).runVersion, summary: "the build: module version, VCS revision, Go version",
		examples: []string{"rugwatch version --json"}},
}

// lookupCommand finds a command of the table by name.
func lookupCommand(name string) (command, bool) {
	for _, c := range commands {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// globalFlags are the flags of every command, accepted before the command
// and after it.
var globalFlags = []struct{ name, value, usage string }{
	{"config", "FILE", "config file (default $RUGWATCH_CONFIG, else ./rugwatch.yaml)"},
	{"log-level", "L", "debug, info, warn, error (default info)"},
	{"log-format", "F", "auto, text, json (default auto)"},
}

// usage is `rugwatch help`: every command, the global flags, exit codes.
func usage() string {
	var b strings.Builder
	b.WriteString("rugwatch catches MCP tool definitions that change after approval.\n\n")
	b.WriteString("Usage: rugwatch [GLOBAL FLAGS] COMMAND [ARGS] [FLAGS]\n\nCommands:\n")
	line := func(left, right string) {
		if len(left) > 30 {
			fmt.Fprintf(&b, "  %s\n  %-30s %s\n", left, "", right)
			return
		}
		fmt.Fprintf(&b, "  %-30s %s\n", left, right)
	}
	for _, c := range commands {
		line(strings.TrimSpace(c.name+" "+c.args), c.summary)
	}
	line("demo-server", "a stdio MCP server whose tools turn malicious")
	b.WriteString("\nGlobal flags, before or after the command:\n")
	for _, g := range globalFlags {
		fmt.Fprintf(&b, "  --%-14s %s\n", g.name+" "+g.value, g.usage)
	}
	b.WriteString("\nRun `rugwatch COMMAND --help` for a command's flags and an example.\n")
	b.WriteString("Exit codes: 0 clean, 1 findings, 2 usage or operational error.\n")
	return b.String()
}

// helpRequest is what parse returns for -h or --help: the command's flag
// set, so that Run prints that command's help instead of an error.
type helpRequest struct{ fs *flag.FlagSet }

func (h *helpRequest) Error() string { return "help requested" }

// isHelpArg reports a -h or --help argument.
func isHelpArg(s string) bool { return s == "-h" || s == "-help" || s == "--help" }

// printCommandHelp writes `rugwatch COMMAND --help`: synopsis, summary,
// the command's own flags (fs nil: none known yet, as for `keys --help`),
// the global flags and the examples.
func printCommandHelp(w io.Writer, c command, fs *flag.FlagSet) {
	name := c.name
	if fs != nil && strings.HasPrefix(fs.Name(), c.name+" ") {
		name = fs.Name() // keys generate
	}
	args := c.args
	if name != c.name {
		args = ""
	}
	fmt.Fprintf(w, "Usage: rugwatch %s [FLAGS]\n\n%s\n", strings.TrimSpace(name+" "+args), c.summary)
	if c.subs && name == c.name {
		if strings.ContainsAny(c.args, " |") {
			fmt.Fprintf(w, "\nEach of %s has flags of its own: rugwatch %s SUBCOMMAND --help\n", c.args, c.name)
		} else {
			fmt.Fprintf(w, "\n%s has flags of its own: rugwatch %s %s --help\n", c.args, c.name, c.args)
		}
	}
	if lines := ownFlags(fs); len(lines) > 0 {
		fmt.Fprintf(w, "\nFlags:\n%s", strings.Join(lines, ""))
	}
	fmt.Fprintln(w, "\nGlobal flags, before or after the command:")
	for _, g := range globalFlags {
		fmt.Fprintf(w, "  --%-20s %s\n", g.name+" "+g.value, g.usage)
	}
	fmt.Fprintln(w, "\nExamples:")
	for _, e := range c.examples {
		fmt.Fprintf(w, "  %s\n", e)
	}
}

// valueNames name what a flag takes in help, by flag name, else by the
// flag package's name of its type.
var valueNames = map[string]string{
	"digest": "D", "key": "FILE", "note": "TEXT", "reason": "TEXT", "dir": "DIR", "home": "DIR", "project": "DIR",
	"install": "CLIENT", "format": "FORMAT", "head": "SEQ:HEAD", "limit": "N",
	"string": "VALUE", "int": "N", "uint": "N", "duration": "DURATION", "float": "X", "value": "VALUE",
}

// ownFlags formats every flag of fs but the global ones, sorted by name.
func ownFlags(fs *flag.FlagSet) []string {
	if fs == nil {
		return nil
	}
	global := map[string]bool{}
	for _, g := range globalFlags {
		global[g.name] = true
	}
	var out []string
	fs.VisitAll(func(f *flag.Flag) {
		if global[f.Name] {
			return
		}
		value, text := flag.UnquoteUsage(f)
		left := "--" + f.Name
		if value != "" {
			if v, ok := valueNames[f.Name]; ok {
				value = v
			} else if v, ok := valueNames[value]; ok {
				value = v
			}
			left += " " + value
		}
		if def := f.DefValue; def != "" && def != "false" && def != "0" && def != "0s" {
			text += fmt.Sprintf(" (default %s)", def)
		}
		out = append(out, fmt.Sprintf("  %-22s %s\n", left, text))
	})
	sort.Strings(out)
	return out
}

// logFlag is --log-level or --log-format given after the command: it
// rebuilds the logger at once, so `check --log-level debug` means what
// `--log-level debug check` means.
type logFlag struct {
	a     *App
	field *string
}

func (f logFlag) String() string {
	if f.field == nil {
		return ""
	}
	return *f.field
}

func (f logFlag) Set(v string) error {
	old := *f.field
	*f.field = v
	log, err := newLogger(f.a.Stderr, f.a.logFormat, f.a.logLevel, f.a.LookupEnv)
	if err != nil {
		*f.field = old
		// The flag package names the flag and the value already.
		_, want, _ := strings.Cut(err.Error(), ": ")
		return errors.New(want)
	}
	f.a.log = log
	return nil
}
