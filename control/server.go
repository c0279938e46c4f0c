package control

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
)

// handler is one method of the protocol, from request body to answer.
type handler func(ctx context.Context, b Backend, body []byte) (any, error)

// method adapts a typed backend call to a handler: the decoding every
// method used to write by hand, written once.
func method[Req, Resp any](fn func(context.Context, Backend, Req) (Resp, error)) handler {
	return func(ctx context.Context, b Backend, body []byte) (any, error) {
		var req Req
		if len(body) > 0 {
			if err := json.Unmarshal(body, &req); err != nil {
				return nil, &monitorUsage{"bad control request: " + err.Error()}
			}
		}
		return fn(ctx, b, req)
	}
}

// monitorUsage is a usage error of the protocol itself.
type monitorUsage struct{ msg string }

func (e *monitorUsage) Error() string { return e.msg }
func (e *monitorUsage) Usage() bool   { return true }

// maxRequest bounds a request body; approvals of a large server are the
// biggest thing a client sends.
const maxRequest = 64 << 20

// Handler serves the backend that get returns (a fresh one per request, so
// a reload is seen at once) on the protocol's routes.
func Handler(get func() Backend, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/ping", func(w http.ResponseWriter, r *http.Request) {
		writeAnswer(w, pingResp{PID: os.Getpid()})
	})
	for name, h := range streams {
		mux.HandleFunc("POST /v1/"+name, func(w http.ResponseWriter, r *http.Request) {
			if err := h(r.Context(), get(), w); err != nil {
				log.Debug("control request failed", "method", name, "error", err)
				writeError(w, err)
			}
		})
	}
	for name, h := range methods {
		mux.HandleFunc("POST /v1/"+name, func(w http.ResponseWriter, r *http.Request) {
			body, err := io.ReadAll(io.LimitReader(r.Body, maxRequest))
			if err != nil {
				writeError(w, err)
				return
			}
			resp, err := h(r.Context(), get(), body)
			if err != nil {
				log.Debug("control request failed", "method", name, "error", err)
				writeError(w, err)
				return
			}
			writeAnswer(w, resp)
		})
	}
	return mux
}

func writeAnswer(w http.ResponseWriter, resp any) {
	w.Header().Set("Content-Type", "application/json")
	// Server text travels exactly as stored: HTML escaping would turn
	// "<IMPORTANT>" into \u003c… and the CLI would print something other
	// than it prints offline.
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(resp)
}

type wireError struct {
	Error string `json:"error"`
	Kind  string `json:"kind"`
}

// IsUsage reports whether err is the caller's mistake (it has a Usage
// method that says so): an unknown server, a bad flag, a bad request.
func IsUsage(err error) bool {
	var u interface{ Usage() bool }
	return errors.As(err, &u) && u.Usage()
}

func writeError(w http.ResponseWriter, err error) {
	kind := "error"
	if IsUsage(err) {
		kind = "usage"
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusUnprocessableEntity)
	_ = json.NewEncoder(w).Encode(wireError{Error: err.Error(), Kind: kind})
}

// decodeWireError reads an error answer's message.
func decodeWireError(b []byte) (string, bool) {
	var we wireError
	if json.Unmarshal(b, &we) != nil || we.Error == "" {
		return "", false
	}
	return we.Error, true
}
