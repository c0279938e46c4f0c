package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/mcpclient"
	"github.com/rugwatch/rugwatch/monitor"
	"github.com/rugwatch/rugwatch/report"
	"github.com/rugwatch/rugwatch/store"
)

// Backend is what rugwatch's commands need: a *monitor.Ledger over the
// store when no daemon runs, a *Client of the daemon's socket when one
// does. Either way a command prints the same thing.
type Backend interface {
	Status(ctx context.Context, servers []string) (report.Report, error)
	Check(ctx context.Context, servers []string) (report.Report, error)
	Server(ctx context.Context, name string) (store.ServerRecord, error)
	Diff(ctx context.Context, server, tool string) (report.DiffResult, error)
	Approve(ctx context.Context, server string, approvals []monitor.SignedApproval, pinLaunch bool) (int, error)
	Revoke(ctx context.Context, server string, tools []string, all bool, reason string) ([]string, error)
	History(ctx context.Context, server string, limit int) ([]rugwatch.Event, error)
	Verify(ctx context.Context, head *store.Head) (report.VerifyReport, error)
	Alerts(ctx context.Context, limit int) (report.AlertsReport, error)
	RetryAlert(ctx context.Context, id string) error
	TestAlert(ctx context.Context, channel string) ([]store.Delivery, error)
	DisabledAlerts(ctx context.Context) ([]store.DisabledChannel, error)
	EnableAlerts(ctx context.Context, channel string) error
	// Backup writes a consistent copy of the store to w, telling size its
	// length first; over the socket it streams (see streams).
	Backup(ctx context.Context, w io.Writer, size func(int64)) (int64, error)
	// ExportLock is the lock file of the named servers' current
	// approvals (`lock export`).
	ExportLock(ctx context.Context, servers []string) ([]byte, error)

	// The proxy's: record an upstream listing and learn what may pass,
	// learn it without recording, and report a flagged tool result.
	Enforce(ctx context.Context, server string, l *mcpclient.Listing) (monitor.Allowed, error)
	Allowed(ctx context.Context, server string) (monitor.Allowed, error)
	FlagResult(ctx context.Context, server, tool string, findings []rugwatch.Finding, blocked bool) error
	// ToolShadowed records that servers behind one gateway serve a tool of
	// one name (tool.shadowed).
	ToolShadowed(ctx context.Context, tool string, servers []string) error
	// Generation is the daemon's approvals generation (see
	// monitor.Ledger.Generation).
	Generation(ctx context.Context) (uint64, error)
	// ToolNames is every recorded server's live tool names.
	ToolNames(ctx context.Context) (map[string][]string, error)
}

var _ Backend = (*monitor.Ledger)(nil)
var _ Backend = (*Client)(nil)

// The requests and responses of the wire, one type per shape.
type (
	serversReq struct {
		Servers []string `json:"servers"`
	}
	serverReq struct {
		Server string `json:"server"`
		Tool   string `json:"tool,omitempty"`
	}
	approveReq struct {
		Server    string                   `json:"server"`
		Approvals []monitor.SignedApproval `json:"approvals"`
		PinLaunch bool                     `json:"pin_launch"`
	}
	revokeReq struct {
		Server string   `json:"server"`
		Tools  []string `json:"tools"`
		All    bool     `json:"all"`
		Reason string   `json:"reason"`
	}
	historyReq struct {
		Server string `json:"server"`
		Limit  int    `json:"limit"`
	}
	alertsReq struct {
		Limit   int    `json:"limit,omitempty"`
		ID      string `json:"id,omitempty"`
		Channel string `json:"channel,omitempty"`
	}
	verifyReq struct {
		Head *store.Head `json:"head,omitempty"`
	}
	enforceReq struct {
		Server  string             `json:"server"`
		Listing *mcpclient.Listing `json:"listing"`
	}
	flagReq struct {
		Server   string             `json:"server"`
		Tool     string             `json:"tool"`
		Findings []rugwatch.Finding `json:"findings"`
		Blocked  bool               `json:"blocked"`
	}
	shadowedReq struct {
		Tool    string   `json:"tool"`
		Servers []string `json:"servers"`
	}
	empty     struct{}
	countResp struct {
		N     int      `json:"n"`
		Names []string `json:"names"`
	}
	eventsResp struct {
		Events []rugwatch.Event `json:"events"`
	}
	deliveriesResp struct {
		Deliveries []store.Delivery `json:"deliveries"`
	}
	disabledResp struct {
		Channels []store.DisabledChannel `json:"channels"`
	}
	lockResp struct {
		Lock []byte `json:"lock"`
	}
	pingResp struct {
		PID int `json:"pid"`
	}
)

// methods is the whole protocol as the server sees it: each entry decodes
// its request, calls the backend and encodes the answer. The Client's
// methods below are the same table seen from the other side.
var methods = map[string]handler{
	"status": method(func(ctx context.Context, b Backend, r serversReq) (report.Report, error) {
		return b.Status(ctx, r.Servers)
	}),
	"check": method(func(ctx context.Context, b Backend, r serversReq) (report.Report, error) {
		return b.Check(ctx, r.Servers)
	}),
	"server": method(func(ctx context.Context, b Backend, r serverReq) (store.ServerRecord, error) {
		return b.Server(ctx, r.Server)
	}),
	"diff": method(func(ctx context.Context, b Backend, r serverReq) (report.DiffResult, error) {
		return b.Diff(ctx, r.Server, r.Tool)
	}),
	"approve": method(func(ctx context.Context, b Backend, r approveReq) (countResp, error) {
		n, err := b.Approve(ctx, r.Server, r.Approvals, r.PinLaunch)
		return countResp{N: n}, err
	}),
	"revoke": method(func(ctx context.Context, b Backend, r revokeReq) (countResp, error) {
		names, err := b.Revoke(ctx, r.Server, r.Tools, r.All, r.Reason)
		return countResp{N: len(names), Names: names}, err
	}),
	"history": method(func(ctx context.Context, b Backend, r historyReq) (eventsResp, error) {
		ev, err := b.History(ctx, r.Server, r.Limit)
		return eventsResp{Events: ev}, err
	}),
	"verify": method(func(ctx context.Context, b Backend, r verifyReq) (report.VerifyReport, error) {
		return b.Verify(ctx, r.Head)
	}),
	"lock.export": method(func(ctx context.Context, b Backend, r serversReq) (lockResp, error) {
		l, err := b.ExportLock(ctx, r.Servers)
		return lockResp{Lock: l}, err
	}),
	"alerts": method(func(ctx context.Context, b Backend, r alertsReq) (report.AlertsReport, error) {
		return b.Alerts(ctx, r.Limit)
	}),
	"alerts.retry": method(func(ctx context.Context, b Backend, r alertsReq) (empty, error) {
		return empty{}, b.RetryAlert(ctx, r.ID)
	}),
	"enforce": method(func(ctx context.Context, b Backend, r enforceReq) (monitor.Allowed, error) {
		if r.Listing == nil {
			return monitor.Allowed{}, &monitorUsage{"enforce needs a listing"}
		}
		return b.Enforce(ctx, r.Server, r.Listing)
	}),
	"allowed": method(func(ctx context.Context, b Backend, r serverReq) (monitor.Allowed, error) {
		return b.Allowed(ctx, r.Server)
	}),
	"generation": method(func(ctx context.Context, b Backend, r empty) (generationResp, error) {
		g, err := b.Generation(ctx)
		return generationResp{Generation: g}, err
	}),
	"tools.names": method(func(ctx context.Context, b Backend, r empty) (toolNamesResp, error) {
		n, err := b.ToolNames(ctx)
		return toolNamesResp{Servers: n}, err
	}),
	"tool.shadowed": method(func(ctx context.Context, b Backend, r shadowedReq) (empty, error) {
		return empty{}, b.ToolShadowed(ctx, r.Tool, r.Servers)
	}),
	"result.flag": method(func(ctx context.Context, b Backend, r flagReq) (empty, error) {
		return empty{}, b.FlagResult(ctx, r.Server, r.Tool, r.Findings, r.Blocked)
	}),
	"alerts.disabled": method(func(ctx context.Context, b Backend, r empty) (disabledResp, error) {
		cs, err := b.DisabledAlerts(ctx)
		return disabledResp{Channels: cs}, err
	}),
	"alerts.enable": method(func(ctx context.Context, b Backend, r alertsReq) (empty, error) {
		return empty{}, b.EnableAlerts(ctx, r.Channel)
	}),
	"alerts.test": method(func(ctx context.Context, b Backend, r alertsReq) (deliveriesResp, error) {
		ds, err := b.TestAlert(ctx, r.Channel)
		return deliveriesResp{Deliveries: ds}, err
	}),
}

func (c *Client) Status(ctx context.Context, servers []string) (report.Report, error) {
	return call[report.Report](ctx, c, "status", serversReq{servers})
}

func (c *Client) Check(ctx context.Context, servers []string) (report.Report, error) {
	return call[report.Report](ctx, c, "check", serversReq{servers})
}

func (c *Client) Server(ctx context.Context, name string) (store.ServerRecord, error) {
	return call[store.ServerRecord](ctx, c, "server", serverReq{Server: name})
}

func (c *Client) Diff(ctx context.Context, server, tool string) (report.DiffResult, error) {
	return call[report.DiffResult](ctx, c, "diff", serverReq{Server: server, Tool: tool})
}

func (c *Client) Approve(ctx context.Context, server string, approvals []monitor.SignedApproval, pinLaunch bool) (int, error) {
	r, err := call[countResp](ctx, c, "approve", approveReq{server, approvals, pinLaunch})
	return r.N, err
}

func (c *Client) Revoke(ctx context.Context, server string, tools []string, all bool, reason string) ([]string, error) {
	r, err := call[countResp](ctx, c, "revoke", revokeReq{server, tools, all, reason})
	return r.Names, err
}

func (c *Client) History(ctx context.Context, server string, limit int) ([]rugwatch.Event, error) {
	r, err := call[eventsResp](ctx, c, "history", historyReq{server, limit})
	return r.Events, err
}

func (c *Client) Verify(ctx context.Context, head *store.Head) (report.VerifyReport, error) {
	return call[report.VerifyReport](ctx, c, "verify", verifyReq{Head: head})
}

func (c *Client) ExportLock(ctx context.Context, servers []string) ([]byte, error) {
	r, err := call[lockResp](ctx, c, "lock.export", serversReq{servers})
	return r.Lock, err
}

func (c *Client) Alerts(ctx context.Context, limit int) (report.AlertsReport, error) {
	return call[report.AlertsReport](ctx, c, "alerts", alertsReq{Limit: limit})
}

func (c *Client) RetryAlert(ctx context.Context, id string) error {
	_, err := call[empty](ctx, c, "alerts.retry", alertsReq{ID: id})
	return err
}

func (c *Client) TestAlert(ctx context.Context, channel string) ([]store.Delivery, error) {
	r, err := call[deliveriesResp](ctx, c, "alerts.test", alertsReq{Channel: channel})
	return r.Deliveries, err
}

func (c *Client) Enforce(ctx context.Context, server string, l *mcpclient.Listing) (monitor.Allowed, error) {
	return call[monitor.Allowed](ctx, c, "enforce", enforceReq{Server: server, Listing: l})
}

func (c *Client) Allowed(ctx context.Context, server string) (monitor.Allowed, error) {
	return call[monitor.Allowed](ctx, c, "allowed", serverReq{Server: server})
}

type generationResp struct {
	Generation uint64 `json:"generation"`
}

// Generation asks the daemon for its approvals generation.
func (c *Client) Generation(ctx context.Context) (uint64, error) {
	r, err := call[generationResp](ctx, c, "generation", empty{})
	return r.Generation, err
}

type toolNamesResp struct {
	Servers map[string][]string `json:"servers"`
}

// ToolNames asks the daemon for every recorded server's live tool names.
func (c *Client) ToolNames(ctx context.Context) (map[string][]string, error) {
	r, err := call[toolNamesResp](ctx, c, "tools.names", empty{})
	return r.Servers, err
}

func (c *Client) FlagResult(ctx context.Context, server, tool string, findings []rugwatch.Finding, blocked bool) error {
	_, err := call[empty](ctx, c, "result.flag", flagReq{server, tool, findings, blocked})
	return err
}

// ToolShadowed asks the daemon to record a tool.shadowed event.
func (c *Client) ToolShadowed(ctx context.Context, tool string, servers []string) error {
	_, err := call[empty](ctx, c, "tool.shadowed", shadowedReq{tool, servers})
	return err
}

func (c *Client) DisabledAlerts(ctx context.Context) ([]store.DisabledChannel, error) {
	r, err := call[disabledResp](ctx, c, "alerts.disabled", empty{})
	return r.Channels, err
}

func (c *Client) EnableAlerts(ctx context.Context, channel string) error {
	_, err := call[empty](ctx, c, "alerts.enable", alertsReq{Channel: channel})
	return err
}

// streams are the methods whose answer is a byte stream, not JSON: a store
// copy may be larger than any JSON answer the CLI accepts (maxAnswer), and
// the CLI writes it to a file of its own, owned by whoever asked, rather
// than the daemon writing to a path a client names.
var streams = map[string]func(ctx context.Context, b Backend, w http.ResponseWriter) error{
	"backup": func(ctx context.Context, b Backend, w http.ResponseWriter) error {
		w.Header().Set("Content-Type", "application/octet-stream")
		cw := &countingWriter{w: w}
		_, err := b.Backup(ctx, cw, func(n int64) {
			// Set before the first byte: a copy cut short is then an
			// unexpected EOF for the client, never a shorter file.
			w.Header().Set("Content-Length", fmt.Sprint(n))
		})
		if err != nil && cw.n > 0 {
			// Too late for an error answer; abort the connection so the
			// client sees the copy fail.
			panic(http.ErrAbortHandler)
		}
		return err
	},
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Backup streams the daemon's copy of the store into w; size is told the
// length the daemon announced. A stream shorter than announced fails.
func (c *Client) Backup(ctx context.Context, w io.Writer, size func(int64)) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://rugwatch/v1/backup", nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("asking the daemon (backup): %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if we, ok := decodeWireError(b); ok {
			return 0, errors.New(we)
		}
		return 0, fmt.Errorf("daemon answered %s to backup", resp.Status)
	}
	if resp.ContentLength < 0 {
		return 0, errors.New("daemon's backup answer has no length; refusing a copy that cannot be checked for completeness")
	}
	if size != nil {
		size(resp.ContentLength)
	}
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("receiving the store copy after %d bytes: %w", n, err)
	}
	if n != resp.ContentLength {
		return n, fmt.Errorf("store copy cut short: %d of %d bytes", n, resp.ContentLength)
	}
	return n, nil
}
