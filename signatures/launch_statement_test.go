package signatures

import (
	"encoding/json"
	"testing"
	"time"
)

// A launch statement signs what runs and who answers as one canonical
// object: the order of their keys never moves its digest, any changed
// byte of either does, and it names no tool.
func TestLaunchStatement(t *testing.T) {
	r := Review{Seq: 4, ApprovedAt: time.Now().UTC()}
	launch := json.RawMessage(`{"sha256":"aa","executable":"/usr/bin/node"}`)
	st, err := LaunchStatement("s", launch, nil, r)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.check(); err != nil {
		t.Fatal(err)
	}
	if !st.Names(KindLaunch, "s", "", st.Digest) || string(st.Definition) != `{"identity":null,"launch":{"executable":"/usr/bin/node","sha256":"aa"}}` || *st.Resolves != 4 {
		t.Fatalf("launch statement %+v (definition %s)", st, st.Definition)
	}
	same, err := LaunchStatement("s", json.RawMessage(`{"executable":"/usr/bin/node","sha256":"aa"}`), nil, r)
	if err != nil || same.Digest != st.Digest {
		t.Fatalf("key order moved the digest: %s vs %s (%v)", same.Digest, st.Digest, err)
	}
	other, err := LaunchStatement("s", json.RawMessage(`{"executable":"/usr/bin/node","sha256":"ab"}`), nil, r)
	if err != nil || other.Digest == st.Digest {
		t.Fatalf("a changed executable digest kept the statement's digest (%v)", err)
	}
	remote, err := LaunchStatement("s", nil, json.RawMessage(`{"tls_spki":"ff"}`), r)
	if err != nil || remote.Digest == st.Digest || remote.Subject() != "launch s "+string(remote.Digest) {
		t.Fatalf("remote identity statement %+v (%v)", remote, err)
	}
	st.Tool = "t"
	if err := st.check(); err == nil {
		t.Fatal("a launch statement naming a tool passed its check")
	}
}
