package mcpclient

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/rugwatch/rugwatch/testkit/testservers"
)

// A poll leaves no connection open behind it: each poll has a transport
// of its own, so a keep-alive connection it left idle would stay, with
// two goroutines and their buffers, and a fleet's cycle would hold one
// per server. Shown by the server seeing every connection closed.
func TestPollClosesItsConnections(t *testing.T) {
	states := make(chan http.ConnState, 256)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		if r.Method != http.MethodPost || json.NewDecoder(r.Body).Decode(&req) != nil {
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		if req.ID == nil {
			w.WriteHeader(http.StatusAccepted)
			return
		}
		res := `{}`
		switch req.Method {
		case "initialize":
			res = testservers.RawInit
		case "tools/list":
			res = `{"tools":[{"name":"a","inputSchema":{"type":"object"}}]}`
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"result":%s}`, req.ID, res))
	}))
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew || st == http.StateClosed || st == http.StateHijacked {
			states <- st
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	target := Target{Name: "srv", Transport: TransportHTTP, URL: srv.URL}
	for range 3 {
		if _, err := Poll(pollCtx(t, 10*time.Second), target, DialOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// Every connection was accepted (StateNew) before its poll returned.
	open := 0
	count := func(st http.ConnState) {
		if st == http.StateNew {
			open++
		} else {
			open--
		}
	}
	for drained := false; !drained; {
		select {
		case st := <-states:
			count(st)
		default:
			drained = true
		}
	}
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for open > 0 {
		select {
		case st := <-states:
			count(st)
		case <-deadline.C:
			t.Fatalf("%d connections still open after the polls returned", open)
		}
	}
}
