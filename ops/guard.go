package ops

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"

	"github.com/rugwatch/rugwatch/configs"
)

// Guard is who may read what http_listen serves besides /healthz and
// /readyz.
type Guard struct {
	// Token resolves the bearer token at each request (a reference is
	// resolved when used, never kept, and a reload is seen at once). It is
	// required on loopback too: any local process, and any page a browser
	// opens, reaches loopback. nil, or "", refuses every request.
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
		want, err := "", errors.New("no token configured")
		if g.Token != nil {
			want, err = g.Token()
		}
		if err == nil && want == "" {
			err = errors.New("the token is empty")
		}
		if err != nil {
			// The error names the reference, never its value.
			log := g.Log
			if log == nil {
				log = slog.Default()
			}
			log.Error("resolving the listener token; refusing every request", "error", err)
			http.Error(w, "the listener's bearer token cannot be resolved; see the daemon's log", http.StatusServiceUnavailable)
			return
		}
		// A browser cannot send a bearer header: `?token=` once sets a
		// cookie (HttpOnly, SameSite=Strict, this path tree only) and
		// redirects to the same page without it, so the token does not
		// stay in the address bar or the history.
		if q := r.URL.Query().Get("token"); q != "" && r.Method == http.MethodGet {
			if !equalSecret(q, want) {
				unauthorized(w)
				return
			}
			http.SetCookie(w, &http.Cookie{Name: cookieName, Value: q, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
			u := *r.URL
			v := u.Query()
			v.Del("token")
			u.RawQuery = v.Encode()
			http.Redirect(w, r, u.RequestURI(), http.StatusSeeOther)
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			if c, err := r.Cookie(cookieName); err == nil {
				got, ok = c.Value, true
			}
		}
		if !ok || !equalSecret(got, want) {
			unauthorized(w)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// cookieName carries the token a browser logged in with.
const cookieName = "rugwatch_token"

// equalSecret compares digests first: equal lengths, so the comparison's
// time says nothing about the token's length either.
func equalSecret(got, want string) bool {
	a, b := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

func unauthorized(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="rugwatch"`)
	http.Error(w, "a bearer token is required: Authorization: Bearer <token>, or open the page once with ?token=<token> (the token `rugwatch init` wrote, or http_token)", http.StatusUnauthorized)
}

func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	return configs.IsLoopbackHost(host)
}
