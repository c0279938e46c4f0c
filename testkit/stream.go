package testkit

import (
	"net/http"
	"sync"
)

// StandaloneStreamOpened wraps a go-sdk Streamable HTTP handler. The
// returned channel is closed once a client's standalone event stream (the
// GET a watching client holds open for notifications such as
// tools/list_changed) is established.
//
// The signal is the GET response's first flush: the go-sdk flushes the
// stream's headers while it holds the stream's lock, and registers the
// stream for delivery before releasing it, so a notification the server
// sends after the channel closes goes out on that stream instead of being
// dropped for want of one. Waiting for this replaces sleeping "long
// enough" after a client connects.
func StandaloneStreamOpened(h http.Handler) (http.Handler, <-chan struct{}) {
	opened := make(chan struct{})
	var once sync.Once
	signal := func() { once.Do(func() { close(opened) }) }
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			w = &flushSignal{ResponseWriter: w, signal: signal}
		}
		h.ServeHTTP(w, r)
	}), opened
}

type flushSignal struct {
	http.ResponseWriter
	signal func()
}

// Flush is what http.NewResponseController finds first; it flushes the
// real writer, then signals.
func (f *flushSignal) Flush() {
	_ = http.NewResponseController(f.ResponseWriter).Flush()
	f.signal()
}

// Unwrap lets http.ResponseController reach the real writer's other
// methods (deadlines, hijacking).
func (f *flushSignal) Unwrap() http.ResponseWriter { return f.ResponseWriter }
