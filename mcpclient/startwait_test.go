package mcpclient

import (
	"strings"
	"testing"
	"time"

	"github.com/rugwatch/rugwatch/testkit/testservers"
)

// TestSlowStartNegotiatesTheSameRevision: a server of both eras that,
// like npx installing its package, reads and writes nothing for 7s after
// it starts. The poll's bound is 12s, so a server/discover wait measured
// from the request (half the bound, 6s) ran out during the "install", the
// poll fell back to initialize and recorded the handshake revision: the
// same server, quick to start, negotiates 2026-07-28, and the difference
// showed as launch drift. Measured from the server's first byte, the slow
// start negotiates what the quick one does.
func TestSlowStartNegotiatesTheSameRevision(t *testing.T) {
	era := "era::" + strings.Join(testservers.BothEras, ",")
	quick, err := Poll(pollCtx(t, 12*time.Second), selfTarget(t, era, nil), DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if quick.ProtocolVersion != StatelessVersion {
		t.Fatalf("quick start negotiated %s, want %s", quick.ProtocolVersion, StatelessVersion)
	}
	start := time.Now()
	slow, err := Poll(pollCtx(t, 12*time.Second), selfTarget(t, testservers.SlowMode+"7000:"+era, nil), DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 7*time.Second {
		t.Fatalf("the slow server answered after %v, before its start delay: the test measures nothing", el)
	}
	if slow.ProtocolVersion != quick.ProtocolVersion || slow.Launch == nil || quick.Launch == nil ||
		slow.Launch.ProtocolVersion != quick.Launch.ProtocolVersion {
		t.Errorf("slow start negotiated %s (launch %+v), quick start %s: the start time decided the revision",
			slow.ProtocolVersion, slow.Launch, quick.ProtocolVersion)
	}
}
