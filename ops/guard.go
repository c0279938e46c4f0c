package ops

import (
	"crypto/sha256"
	"crypto/subtle"
	"log/slog"
	"net"
	"net/http"
	"strings"

	"github.com/rugwatch/rugwatch/configs"
)

// Guard is who may read what http_listen serves besides /healthz and
// /readyz.
type Guard struct {
	// Token resolves http_token at each request (a reference is resolved
	// when used, never kept, and a reload is seen at once); nil, or ""
	// without an error, means no token is required, which the config
	// allows only on loopback. (A reference never resolves to "": an
	// empty variable or file is an error.)
	Token func() (string, error)
	// LoopbackHost makes a request whose Host is not a loopback name or
	// address fail: on a loopback listener, a page the operator's browser
	// loaded from elsewhere must not read the view by DNS rebinding.
	LoopbackHost bool
	Log          *slog.Logger
}

// Wrap guards h.
func (g Guard) Wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g.LoopbackHost && !loopbackHost(r.Host) {
			http.Error(w, "this listener answers only to a loopback Host (DNS rebinding guard)", http.StatusMisdirectedRequest)
			return
		}
		if g.Token != nil {
			want, err := g.Token()
			if err != nil {
				// The error names the reference, never its value.
				g.Log.Error("resolving http_token", "error", err)
				http.Error(w, "http_token cannot be resolved; see the daemon's log", http.StatusServiceUnavailable)
				return
			}
			if want == "" {
				h.ServeHTTP(w, r)
				return
			}
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			// Digests first: equal lengths, so the comparison's time says
			// nothing about the token's length either.
			a, b := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
			if !ok || subtle.ConstantTimeCompare(a[:], b[:]) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="rugwatch"`)
				http.Error(w, "a bearer token is required (http_token)", http.StatusUnauthorized)
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	return configs.IsLoopbackHost(host)
}
