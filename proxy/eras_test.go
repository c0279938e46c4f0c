//lint:file-ignore SA1019 logging is deprecated from 2026-07-28, and a handshake-era client still uses it: translating it for a stateless-only server is what this file tests.

package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/rugwatch/rugwatch/mcpclient"
)

// newStatelessOnlyUpstream is a go-sdk server that speaks only the
// stateless 2026-07-28 revision: no logging/setLevel, no
// resources/subscribe. Its tool log logs at info, and updated tells the
// subscribers of test://note that it changed.
func newStatelessOnlyUpstream(t *testing.T) *upstream {
	t.Helper()
	srv := mcp.NewServer(&mcp.Implementation{Name: "stateless-only", Version: "1.0.0"}, &mcp.ServerOptions{
		SupportedProtocolVersions: []string{mcpclient.StatelessVersion},
		SubscribeHandler:          func(context.Context, *mcp.SubscribeRequest) error { return nil },
		UnsubscribeHandler:        func(context.Context, *mcp.UnsubscribeRequest) error { return nil },
	})
	srv.AddTool(&mcp.Tool{Name: "log", Description: "Logs a line.", InputSchema: json.RawMessage(`{"type":"object"}`)},
		func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			if err := req.Session.Log(ctx, &mcp.LoggingMessageParams{Level: "info", Data: "hello from upstream"}); err != nil {
				return nil, err
			}
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "logged"}}}, nil
		})
	srv.AddTool(&mcp.Tool{Name: "updated", Description: "Updates the note.", InputSchema: json.RawMessage(`{"type":"object"}`)},
		func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			if err := srv.ResourceUpdated(ctx, &mcp.ResourceUpdatedNotificationParams{URI: "test://note"}); err != nil {
				return nil, err
			}
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "updated"}}}, nil
		})
	srv.AddResource(&mcp.Resource{URI: "test://note", Name: "note", MIMEType: "text/plain"},
		func(context.Context, *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
			return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: "test://note", Text: "a note"}}}, nil
		})
	hs := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv },
		&mcp.StreamableHTTPOptions{Stateless: true}))
	t.Cleanup(hs.Close)
	return &upstream{srv: srv, url: hs.URL}
}

// A handshake-era client behind the proxy uses logging/setLevel and
// resources/subscribe on a server that speaks only 2026-07-28, where
// neither method exists: the proxy carries the level in each request's
// _meta and the subscription on its subscriptions/listen, so the log line
// and the update reach the client. Without the translation (the methods
// forwarded as they came) neither does, so the test can fail.
func TestEraTranslationForStatelessOnlyServer(t *testing.T) {
	for _, translate := range []bool{true, false} {
		name := map[bool]string{true: "translated", false: "forwarded as is"}[translate]
		t.Run(name, func(t *testing.T) {
			r := newRigWith(t, newStatelessOnlyUpstream(t))
			logs := make(chan string, 4)
			updates := make(chan string, 4)
			copts := &mcp.ClientOptions{
				LoggingMessageHandler: func(_ context.Context, req *mcp.LoggingMessageRequest) {
					if s, ok := req.Params.Data.(string); ok {
						logs <- s
					}
				},
				ResourceUpdatedHandler: func(_ context.Context, req *mcp.ResourceUpdatedNotificationRequest) {
					updates <- req.Params.URI
				},
			}
			opts := r.options(ResultsFlag)
			opts.Watch = nil
			opts.noTranslation = !translate
			first, _ := r.connect(opts, nil)
			toolNames(t, first)
			r.approve("log", "updated")
			cs, _ := r.connect(opts, copts)
			toolNames(t, cs)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()

			levelErr := cs.SetLoggingLevel(ctx, &mcp.SetLoggingLevelParams{Level: "debug"})
			if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "log", Arguments: map[string]any{}}); err != nil {
				t.Fatal(err)
			}
			subErr := cs.Subscribe(ctx, &mcp.SubscribeParams{URI: "test://note"})
			if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "updated", Arguments: map[string]any{}}); err != nil {
				t.Fatal(err)
			}
			// What arrives, arrives within the wait; without the
			// translation the wait is how long nothing is shown to come.
			wait := 20 * time.Second
			if !translate {
				wait = 2 * time.Second
			}
			var gotLog, gotUpdate bool
			timeout := time.After(wait)
			for !(gotLog && gotUpdate) {
				select {
				case <-logs:
					gotLog = true
					continue
				case <-updates:
					gotUpdate = true
					continue
				case <-timeout:
				}
				break
			}
			if translate {
				if levelErr != nil || subErr != nil {
					t.Fatalf("setLevel: %v; subscribe: %v", levelErr, subErr)
				}
				if !gotLog || !gotUpdate {
					t.Fatalf("through the proxy the client got the log line: %v, the update: %v", gotLog, gotUpdate)
				}
				if err := cs.Unsubscribe(ctx, &mcp.UnsubscribeParams{URI: "test://note"}); err != nil {
					t.Fatalf("unsubscribe: %v", err)
				}
				return
			}
			if gotLog && gotUpdate && levelErr == nil && subErr == nil {
				t.Fatal("without the translation both still worked: the test cannot tell it does anything")
			}
		})
	}
}

// A client cannot grow the proxy's subscriptions/listen without bound:
// past maxSubscriptions distinct URIs a subscribe is refused, and one
// already held is still answered.
func TestSubscriptionsPerSessionAreBounded(t *testing.T) {
	r := newRigWith(t, newStatelessOnlyUpstream(t))
	opts := r.options(ResultsFlag)
	opts.Watch = nil
	cs, _ := r.connect(opts, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := range maxSubscriptions {
		if err := cs.Subscribe(ctx, &mcp.SubscribeParams{URI: fmt.Sprintf("test://r%d", i)}); err != nil {
			t.Fatalf("subscription %d: %v", i, err)
		}
	}
	err := cs.Subscribe(ctx, &mcp.SubscribeParams{URI: "test://one-too-many"})
	if err == nil || !strings.Contains(err.Error(), "at most") {
		t.Fatalf("subscription %d: %v, want a refusal", maxSubscriptions+1, err)
	}
	if err := cs.Subscribe(ctx, &mcp.SubscribeParams{URI: "test://r0"}); err != nil {
		t.Fatalf("a subscription already held: %v", err)
	}
}
