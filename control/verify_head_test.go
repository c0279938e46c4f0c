package control

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/report"
	"github.com/rugwatch/rugwatch/store"
)

// headRecorder answers verify and remembers the head it was asked about.
type headRecorder struct {
	Backend
	got chan *store.Head
}

func (h headRecorder) Verify(_ context.Context, head *store.Head) (report.VerifyReport, error) {
	h.got <- head
	return report.VerifyReport{SchemaVersion: 1, OK: head == nil, HeadError: "not held"}, nil
}

// verify --head through the daemon: the head the CLI parsed reaches the
// daemon's Ledger whole, and none is sent when none was given.
func TestVerifyCarriesTheHeadOverTheSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "rugwatch.sock")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ln, err := Listen(path, Peers{}, log)
	if err != nil {
		t.Fatal(err)
	}
	b := headRecorder{got: make(chan *store.Head, 1)}
	srv := &http.Server{Handler: Handler(func() Backend { return b }, log)}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	c, ok := Dial(t.Context(), path)
	if !ok {
		t.Fatal("daemon socket not answering")
	}
	defer c.Close()

	want := store.Head{Seq: 42, Digest: rugwatch.Digest("sha256:" + strings.Repeat("0123456789abcdef", 4))}
	rep, err := c.Verify(t.Context(), &want)
	if err != nil {
		t.Fatal(err)
	}
	if got := <-b.got; got == nil || *got != want || rep.HeadError != "not held" {
		t.Fatalf("daemon was asked about %v (report %+v), want %v", got, rep, want)
	}
	if _, err := c.Verify(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	if got := <-b.got; got != nil {
		t.Fatalf("a verify without --head sent head %v", got)
	}
}
