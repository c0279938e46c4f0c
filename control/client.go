package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/rugwatch/rugwatch/monitor"
)

// Client is the Backend of a running daemon, over its control socket.
type Client struct {
	http *http.Client
}

// maxAnswer bounds what the CLI reads from the daemon.
const maxAnswer = 256 << 20

// Dial connects to the daemon's socket if one answers. A socket file
// nobody listens on is a stale one from a crash: the store is free, and
// the caller opens it itself.
func Dial(ctx context.Context, path string) (*Client, bool) {
	if fi, err := os.Stat(path); err != nil || fi.Mode()&os.ModeSocket == 0 {
		return nil, false
	}
	c := &Client{http: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}}
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := call[pingResp](pctx, c, "ping", empty{}); err != nil {
		c.Close()
		return nil, false
	}
	return c, true
}

// Close releases the client's idle connections.
func (c *Client) Close() error { c.http.CloseIdleConnections(); return nil }

// call sends one request and decodes its answer; an error of kind usage
// comes back as a *monitor.UsageError, so the CLI treats it alike.
func call[Resp any](ctx context.Context, c *Client, method string, req any) (Resp, error) {
	var resp Resp
	body, err := json.Marshal(req)
	if err != nil {
		return resp, err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://rugwatch/v1/"+method, bytes.NewReader(body))
	if err != nil {
		return resp, err
	}
	hreq.Header.Set("Content-Type", "application/json")
	hresp, err := c.http.Do(hreq)
	if err != nil {
		return resp, fmt.Errorf("asking the daemon (%s): %w", method, err)
	}
	defer hresp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(hresp.Body, maxAnswer))
	if err != nil {
		return resp, fmt.Errorf("reading the daemon's answer (%s): %w", method, err)
	}
	if hresp.StatusCode != http.StatusOK {
		var we wireError
		if json.Unmarshal(b, &we) != nil || we.Error == "" {
			return resp, fmt.Errorf("daemon answered %s to %s", hresp.Status, method)
		}
		if we.Kind == "usage" {
			return resp, &monitor.UsageError{Msg: we.Error}
		}
		return resp, errors.New(we.Error)
	}
	if err := json.Unmarshal(b, &resp); err != nil {
		return resp, fmt.Errorf("decoding the daemon's answer (%s): %w", method, err)
	}
	return resp, nil
}
