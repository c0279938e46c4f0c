package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
)

// TestDiscoverCommand runs the command on the clients package's client
// fixtures; what discover finds is tested there.
func TestDiscoverCommand(t *testing.T) {
	home, _ := filepath.Abs("../../clients/testdata/discover/home")
	project, _ := filepath.Abs("../../clients/testdata/discover/project")
	var out bytes.Buffer
	a := &App{Stdout: &out, Stderr: &out}
	if err := a.runDiscover(context.Background(), []string{"--json", "--home", home, "--project", project}); err != nil {
		t.Fatalf("discover: %v\n%s", err, out.String())
	}
	var rep struct {
		Servers []json.RawMessage `json:"servers"`
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil || len(rep.Servers) < 10 {
		t.Fatalf("discover --json: %d servers, %v\n%s", len(rep.Servers), err, out.String())
	}
	if err := a.runDiscover(context.Background(), []string{"extra"}); err == nil {
		t.Error("want a usage error for an argument")
	}
}
