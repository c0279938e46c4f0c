package testservers

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// RPCServer is a Streamable HTTP MCP server written by hand, answering each
// POSTed call with whatever handle returns as the whole JSON-RPC message
// ("" means: answer with result {}). It plays servers no SDK would be.
func RPCServer(t *testing.T, handle func(method string, id json.RawMessage, params json.RawMessage) string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		var req struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
			Params json.RawMessage `json:"params"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, "bad json", http.StatusBadRequest)
			return
		}
		if req.ID == nil {
			w.WriteHeader(http.StatusAccepted) // a notification
			return
		}
		msg := handle(req.Method, req.ID, req.Params)
		if msg == "" {
			msg = fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"result":{}}`, req.ID)
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, msg)
	}))
	t.Cleanup(srv.Close)
	return srv
}

const RawInit = `{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"hostile","version":"1"}}`

func Result(id json.RawMessage, res string) string {
	return fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"result":%s}`, id, res)
}

// WriteFiles writes rel → content below dir; a rel ending in "*" is
// executable (the star is not part of the name).
func WriteFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for rel, body := range files {
		mode := os.FileMode(0o644)
		if r, ok := strings.CutSuffix(rel, "*"); ok {
			rel, mode = r, 0o755
		}
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
	}
}
