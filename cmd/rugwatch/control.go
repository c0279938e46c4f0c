package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/configs"
	"github.com/rugwatch/rugwatch/monitor"
	"github.com/rugwatch/rugwatch/store"
)

// The control socket is HTTP over a Unix socket in the data dir. Every
// method is a POST of a JSON request to /v1/<method>; an error comes back
// as {"error": …, "kind": "usage"|"error"}.

func socketPath(cfg *configs.Config) string { return filepath.Join(cfg.DataDir, "rugwatch.sock") }

// backend returns the daemon's control socket when serve runs, else a
// local backend over the store. polling says whether the command polls
// (check needs the config's servers resolved, signing keys and so on).
func (a *App) backend(ctx context.Context, polling bool) (backend, error) {
	cfg, err := a.config()
	if err != nil {
		return nil, err
	}
	if r, ok := dialControl(ctx, socketPath(cfg)); ok {
		return r, nil
	}
	ver, err := a.verifier(cfg)
	if err != nil {
		return nil, err
	}
	db, err := a.openStore(cfg)
	if err != nil {
		return nil, err
	}
	al, err := newAlerting(cfg, a.resolver(), a.log)
	if err != nil {
		db.Close()
		return nil, err
	}
	l := &local{cfg: cfg, db: db, ver: ver, closeDB: true, inTx: al.inTx,
		deliver: func(ctx context.Context) error {
			return drain(ctx, al.dispatcher(db, a.log), 2*time.Minute)
		}}
	if polling {
		rec := &monitor.Recorder{DB: db, Verifier: ver, UnreachableAfter: cfg.UnreachableAfter, InTx: al.inTx}
		if cfg.ApproveFirstSeen {
			key := cfg.SigningKey
			if key == "" {
				key = filepath.Join(cfg.DataDir, "approver.key") // as serve does
			}
			s, err := loadSigner(key, a.keyPassword)
			if err != nil {
				db.Close()
				return nil, err
			}
			rec.Signer = s
		}
		p := &poller{app: a, cfg: cfg, rec: rec, log: a.log}
		l.poll = p.pollAll
	}
	return l, nil
}

// remote is the backend of a running daemon.
type remote struct {
	client *http.Client
}

// dialControl connects to the daemon's socket if one answers. A socket
// file nobody listens on is a stale one from a crash: the store is free.
func dialControl(ctx context.Context, path string) (*remote, bool) {
	if fi, err := os.Stat(path); err != nil || fi.Mode()&os.ModeSocket == 0 {
		return nil, false
	}
	r := &remote{client: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}}
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var pong map[string]any
	if err := r.call(pctx, "ping", nil, &pong); err != nil {
		return nil, false
	}
	return r, true
}

func (r *remote) Close() error { r.client.CloseIdleConnections(); return nil }

type controlError struct {
	Error string `json:"error"`
	Kind  string `json:"kind"`
}

func (r *remote) call(ctx context.Context, method string, req, resp any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://rugwatch/v1/"+method, bytes.NewReader(body))
	if err != nil {
		return err
	}
	hreq.Header.Set("Content-Type", "application/json")
	hresp, err := r.client.Do(hreq)
	if err != nil {
		return fmt.Errorf("asking the daemon (%s): %w", method, err)
	}
	defer hresp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(hresp.Body, 256<<20))
	if err != nil {
		return fmt.Errorf("reading the daemon's answer (%s): %w", method, err)
	}
	if hresp.StatusCode != http.StatusOK {
		var ce controlError
		if json.Unmarshal(b, &ce) != nil || ce.Error == "" {
			return fmt.Errorf("daemon answered %s to %s", hresp.Status, method)
		}
		if ce.Kind == "usage" {
			return usageError{ce.Error}
		}
		return errors.New(ce.Error)
	}
	return json.Unmarshal(b, resp)
}

type serversReq struct {
	Servers []string `json:"servers"`
}

func (r *remote) Status(ctx context.Context, servers []string) (rep Report, err error) {
	err = r.call(ctx, "status", serversReq{servers}, &rep)
	return
}

func (r *remote) Check(ctx context.Context, servers []string) (rep Report, err error) {
	err = r.call(ctx, "check", serversReq{servers}, &rep)
	return
}

type serverReq struct {
	Server string `json:"server"`
	Tool   string `json:"tool,omitempty"`
}

func (r *remote) Server(ctx context.Context, name string) (rec store.ServerRecord, err error) {
	err = r.call(ctx, "server", serverReq{Server: name}, &rec)
	return
}

func (r *remote) Diff(ctx context.Context, server, tool string) (res DiffResult, err error) {
	err = r.call(ctx, "diff", serverReq{Server: server, Tool: tool}, &res)
	return
}

type approveReq struct {
	Server    string           `json:"server"`
	Approvals []SignedApproval `json:"approvals"`
	PinLaunch bool             `json:"pin_launch"`
}

type countResp struct {
	N     int      `json:"n"`
	Names []string `json:"names"`
}

func (r *remote) Approve(ctx context.Context, server string, approvals []SignedApproval, pinLaunch bool) (int, error) {
	var resp countResp
	err := r.call(ctx, "approve", approveReq{server, approvals, pinLaunch}, &resp)
	return resp.N, err
}

type revokeReq struct {
	Server string   `json:"server"`
	Tools  []string `json:"tools"`
	All    bool     `json:"all"`
	Reason string   `json:"reason"`
}

func (r *remote) Revoke(ctx context.Context, server string, tools []string, all bool, reason string) ([]string, error) {
	var resp countResp
	err := r.call(ctx, "revoke", revokeReq{server, tools, all, reason}, &resp)
	return resp.Names, err
}

type historyReq struct {
	Server string `json:"server"`
	Limit  int    `json:"limit"`
}

func (r *remote) History(ctx context.Context, server string, limit int) ([]rugwatch.Event, error) {
	var resp struct {
		Events []rugwatch.Event `json:"events"`
	}
	err := r.call(ctx, "history", historyReq{server, limit}, &resp)
	return resp.Events, err
}

func (r *remote) Verify(ctx context.Context) (rep VerifyReport, err error) {
	err = r.call(ctx, "verify", struct{}{}, &rep)
	return
}

type alertsReq struct {
	Limit   int    `json:"limit,omitempty"`
	ID      string `json:"id,omitempty"`
	Channel string `json:"channel,omitempty"`
}

func (r *remote) Alerts(ctx context.Context, limit int) (rep AlertsReport, err error) {
	err = r.call(ctx, "alerts", alertsReq{Limit: limit}, &rep)
	return
}

func (r *remote) RetryAlert(ctx context.Context, id string) error {
	var resp struct{}
	return r.call(ctx, "alerts.retry", alertsReq{ID: id}, &resp)
}

func (r *remote) TestAlert(ctx context.Context, channel string) ([]store.Delivery, error) {
	var resp struct {
		Deliveries []store.Delivery `json:"deliveries"`
	}
	err := r.call(ctx, "alerts.test", alertsReq{Channel: channel}, &resp)
	return resp.Deliveries, err
}

// controlHandler serves a backend on the control socket.
func controlHandler(get func() backend, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	handle := func(method string, fn func(ctx context.Context, b backend, body []byte) (any, error)) {
		mux.HandleFunc("POST /v1/"+method, func(w http.ResponseWriter, r *http.Request) {
			body, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
			if err != nil {
				writeControlError(w, err)
				return
			}
			resp, err := fn(r.Context(), get(), body)
			if err != nil {
				log.Debug("control request failed", "method", method, "error", err)
				writeControlError(w, err)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			// Server text travels exactly as stored: HTML escaping would
			// turn "<IMPORTANT>" into \u003c… and the CLI would print
			// something other than it prints offline.
			enc := json.NewEncoder(w)
			enc.SetEscapeHTML(false)
			_ = enc.Encode(resp)
		})
	}
	decode := func(body []byte, v any) error {
		if err := json.Unmarshal(body, v); err != nil {
			return usagef("bad control request: %v", err)
		}
		return nil
	}
	handle("ping", func(context.Context, backend, []byte) (any, error) {
		return map[string]any{"pid": os.Getpid()}, nil
	})
	handle("status", func(ctx context.Context, b backend, body []byte) (any, error) {
		var req serversReq
		if err := decode(body, &req); err != nil {
			return nil, err
		}
		return b.Status(ctx, req.Servers)
	})
	handle("check", func(ctx context.Context, b backend, body []byte) (any, error) {
		var req serversReq
		if err := decode(body, &req); err != nil {
			return nil, err
		}
		return b.Check(ctx, req.Servers)
	})
	handle("server", func(ctx context.Context, b backend, body []byte) (any, error) {
		var req serverReq
		if err := decode(body, &req); err != nil {
			return nil, err
		}
		return b.Server(ctx, req.Server)
	})
	handle("diff", func(ctx context.Context, b backend, body []byte) (any, error) {
		var req serverReq
		if err := decode(body, &req); err != nil {
			return nil, err
		}
		return b.Diff(ctx, req.Server, req.Tool)
	})
	handle("approve", func(ctx context.Context, b backend, body []byte) (any, error) {
		var req approveReq
		if err := decode(body, &req); err != nil {
			return nil, err
		}
		n, err := b.Approve(ctx, req.Server, req.Approvals, req.PinLaunch)
		return countResp{N: n}, err
	})
	handle("revoke", func(ctx context.Context, b backend, body []byte) (any, error) {
		var req revokeReq
		if err := decode(body, &req); err != nil {
			return nil, err
		}
		names, err := b.Revoke(ctx, req.Server, req.Tools, req.All, req.Reason)
		return countResp{N: len(names), Names: names}, err
	})
	handle("history", func(ctx context.Context, b backend, body []byte) (any, error) {
		var req historyReq
		if err := decode(body, &req); err != nil {
			return nil, err
		}
		ev, err := b.History(ctx, req.Server, req.Limit)
		return map[string]any{"events": ev}, err
	})
	handle("verify", func(ctx context.Context, b backend, _ []byte) (any, error) {
		return b.Verify(ctx)
	})
	handle("alerts", func(ctx context.Context, b backend, body []byte) (any, error) {
		var req alertsReq
		if err := decode(body, &req); err != nil {
			return nil, err
		}
		return b.Alerts(ctx, req.Limit)
	})
	handle("alerts.retry", func(ctx context.Context, b backend, body []byte) (any, error) {
		var req alertsReq
		if err := decode(body, &req); err != nil {
			return nil, err
		}
		return struct{}{}, b.RetryAlert(ctx, req.ID)
	})
	handle("alerts.test", func(ctx context.Context, b backend, body []byte) (any, error) {
		var req alertsReq
		if err := decode(body, &req); err != nil {
			return nil, err
		}
		ds, err := b.TestAlert(ctx, req.Channel)
		return map[string]any{"deliveries": ds}, err
	})
	return mux
}

func writeControlError(w http.ResponseWriter, err error) {
	kind := "error"
	var ue usageError
	if errors.As(err, &ue) {
		kind = "usage"
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusUnprocessableEntity)
	_ = json.NewEncoder(w).Encode(controlError{Error: err.Error(), Kind: kind})
}

// listenControl opens the socket with mode 0600 in a 0700 directory. A
// path that exists is removed only when it is a socket nobody answers on
// (left by a crash); anything else there is refused.
func listenControl(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	if err := os.Chmod(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("restricting %s: %w", filepath.Dir(path), err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket; refusing to replace it", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s: another rugwatch serve answers there", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("removing stale socket %s: %w", path, err)
		}
	}
	// The umask makes the socket 0600 from its creation: no window in which
	// another user could connect.
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	return ln, nil
}
