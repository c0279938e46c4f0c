package signatures

import (
	"testing"
	"time"

	"github.com/rugwatch/rugwatch"
)

// A statement names exactly its subject: any one of kind, server, tool
// or digest that differs is another subject.
func TestStatementNames(t *testing.T) {
	r := Review{Seq: 3, ApprovedAt: time.Now().UTC(), Note: "ok",
		Accepted: AcceptedFindings([]rugwatch.Finding{{Rule: "a", Path: "/x", Severity: rugwatch.SeverityCritical}, {Rule: "b", Path: "/y", Severity: rugwatch.SeverityWarning}})}
	st := ToolStatement("s", "t", "sha256:1", []byte(`{"name":"t"}`), r)
	if !st.Names(KindTool, "s", "t", "sha256:1") {
		t.Fatal("a tool statement does not name its own subject")
	}
	for _, other := range [][4]string{{KindInstructions, "s", "t", "sha256:1"}, {KindTool, "S", "t", "sha256:1"}, {KindTool, "s", "T", "sha256:1"}, {KindTool, "s", "t", "sha256:2"}} {
		if st.Names(other[0], other[1], other[2], rugwatch.Digest(other[3])) {
			t.Errorf("names %v", other)
		}
	}
	if len(st.AcceptedFindings) != 1 || st.AcceptedFindings[0] != "a /x" || *st.Resolves != 3 {
		t.Errorf("statement %+v", st)
	}
	canon, err := InstructionsCanonical("Use search first.", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	d := DigestOf(canon)
	in, err := InstructionsStatement("s", "Use search first.", d, r)
	if err != nil {
		t.Fatal(err)
	}
	if !in.Names(KindInstructions, "s", "", d) || string(in.Definition) != `"Use search first."` {
		t.Errorf("instructions statement %+v", in)
	}
	if err := in.check(); err != nil {
		t.Error(err)
	}
}
