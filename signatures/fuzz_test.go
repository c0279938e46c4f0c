package signatures

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/gowebpki/jcs"
)

func FuzzCanonical(f *testing.F) {
	for _, s := range []string{
		`{}`, `[]`, `null`, `1.0`, `-0`, `1e400`, `"\ud800"`, `"\ud83d\ude00"`,
		`{"a":1,"a":2}`, `{"b":[1,{"c":"\u00e9"}],"a":"x"}`, "\"\xff\"", `[[[[]]]]`,
		`{"a":1} {}`, `"\\ud800"`, `{"\u0000":"\u001f"}`, `0.1e-7`, `123456789012345678901234567890`,
	} {
		f.Add([]byte(s))
	}
	if raw, err := os.ReadFile(filepath.Join("testdata", "tool-cases.json")); err == nil {
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		lim := Limits{MaxDepth: 32, MaxStringBytes: 4096, MaxBytes: 1 << 16}
		c, err := Canonical(raw, lim)
		if err != nil {
			if !IsHostile(err) {
				t.Fatalf("error %v is not a *HostileError", err)
			}
			if ve := validate(raw, lim); ve == nil {
				// Our parser accepted what jcs refused: a disagreement
				// between the two parsers is a bug to look at.
				t.Fatalf("validate accepted, jcs refused: %v", err)
			}
			return
		}
		// The fast path (a limits scan, then jcs) must never accept what
		// the strict walk refuses.
		if ve := validate(raw, lim); ve != nil {
			t.Fatalf("fast path accepted %q, validate refuses: %v", raw, ve)
		}
		c2, err := Canonical(c, lim)
		if err != nil {
			t.Fatalf("canonical output %q refused: %v", c, err)
		}
		if !bytes.Equal(c, c2) {
			t.Fatalf("not idempotent:\n %q\n %q", c, c2)
		}
		// Whatever we accept, jcs accepts identically on its own.
		j, err := jcs.Transform(raw)
		if err != nil || !bytes.Equal(j, c) {
			t.Fatalf("jcs.Transform disagrees: %q, %v", j, err)
		}
	})
}
