package monitor

import (
	"strings"
	"testing"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/report"
	"github.com/rugwatch/rugwatch/signatures"
	"github.com/rugwatch/rugwatch/store"
)

// What --live calls a mismatch: a tool served under another digest, one
// the file approves that is gone, one served that the file does not
// approve, other instructions, a server not reached. A removed tool the
// file does not name, and a tool served as approved, are not.
func TestLockCompareLive(t *testing.T) {
	d := func(c byte) rugwatch.Digest {
		b := []byte("sha256:")
		for range 64 {
			b = append(b, c)
		}
		return rugwatch.Digest(b)
	}
	sig := func(server, kind, tool string, dg rugwatch.Digest) signatures.LockSignature {
		return signatures.LockSignature{Server: server, Kind: kind, Tool: tool, Digest: dg, KeyID: "k"}
	}
	lock := signatures.Lock{Signatures: []signatures.LockSignature{
		sig("a", store.KindTool, "same", d('1')), sig("a", store.KindTool, "drifted", d('2')),
		sig("a", store.KindTool, "gone", d('3')), sig("a", store.KindInstructions, "", d('4')),
		sig("down", store.KindTool, "x", d('5')),
	}}
	tool := func(name string, st rugwatch.State, dg rugwatch.Digest) report.ToolReport {
		return report.ToolReport{Name: name, ToolState: report.ToolState{State: st, ObservedDigest: dg}}
	}
	rep := report.Report{Servers: []report.ServerReport{
		{Name: "a", Reachable: true, InstructionsDigest: d('9'), Tools: []report.ToolReport{
			tool("same", rugwatch.StateApproved, d('1')), tool("drifted", rugwatch.StateDrifted, d('8')),
			tool("new", rugwatch.StatePending, d('7')), tool("old", rugwatch.StateRemoved, d('6')),
		}},
		{Name: "down", Reachable: false, Error: "connection refused"},
	}}
	got := map[string]string{}
	for _, m := range CompareLive(lock, rep) {
		got[m.Server+" "+m.Kind+" "+m.Tool] = m.Problem
	}
	want := map[string]string{
		"a instructions ": "the server now sends other instructions",
		"a tool drifted":  "the server now serves another definition",
		"a tool gone":     "approved in the file, no longer listed by the server",
		"a tool new":      "listed by the server, not approved in the file",
		"down tool ":      "server not reached: connection refused",
	}
	if len(got) != len(want) {
		t.Errorf("mismatches %v, want %v", got, want)
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: %q, want %q", k, got[k], w)
		}
	}
}

// Instructions a server sends that the file does not approve are a live
// mismatch, as a tool it lists unapproved is; a server that sends none,
// and one whose approved instructions are sent as approved, are not.
func TestLockCompareLiveUnapprovedInstructions(t *testing.T) {
	d := func(c byte) rugwatch.Digest { return rugwatch.Digest("sha256:" + strings.Repeat(string(c), 64)) }
	sig := func(server, kind, tool string, dg rugwatch.Digest) signatures.LockSignature {
		return signatures.LockSignature{Server: server, Kind: kind, Tool: tool, Digest: dg, KeyID: "k"}
	}
	lock := signatures.Lock{Signatures: []signatures.LockSignature{
		sig("sends", store.KindTool, "t", d('1')), sig("silent", store.KindTool, "t", d('1')),
		sig("approved", store.KindTool, "t", d('1')), sig("approved", store.KindInstructions, "", d('3')),
	}}
	tools := []report.ToolReport{{Name: "t", ToolState: report.ToolState{State: rugwatch.StateApproved, ObservedDigest: d('1')}}}
	rep := report.Report{Servers: []report.ServerReport{
		{Name: "sends", Reachable: true, InstructionsDigest: d('2'), Tools: tools},
		{Name: "silent", Reachable: true, Tools: tools},
		{Name: "approved", Reachable: true, InstructionsDigest: d('3'), Tools: tools},
	}}
	got := CompareLive(lock, rep)
	if len(got) != 1 || got[0].Server != "sends" || got[0].Kind != store.KindInstructions ||
		got[0].Problem != "instructions sent by the server, not approved in the file" || got[0].Observed != string(d('2')) {
		t.Fatalf("mismatches %+v, want the unapproved instructions of sends alone", got)
	}
}
