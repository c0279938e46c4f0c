package store

import (
	"bytes"
	"testing"
	"time"
)

func approval(server, kind, tool, what string) ApprovalRecord {
	return ApprovalRecord{
		Kind:       kind,
		Server:     server,
		Tool:       tool,
		Digest:     digestOf(what),
		KeyID:      "key-1",
		ApprovedAt: time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC),
		Envelope:   []byte("{\n  \"payload\": \"" + what + "\"\n}"),
		Note:       "looked fine",
	}
}

func TestApprovalRoundTripAndOrder(t *testing.T) {
	db := openTest(t)
	in := []ApprovalRecord{
		approval("zeta", KindTool, "b", "zb"),
		approval("alpha", KindTool, "b", "ab"),
		approval("alpha", KindInstructions, "", "ai"),
		approval("alpha", KindTool, "a", "aa"),
	}
	if err := db.Update(func(tx *Tx) error {
		for _, a := range in {
			if err := tx.PutApproval(a); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	_ = db.View(func(tx *Tx) error {
		got, ok, err := tx.Approval("alpha", KindTool, "a")
		if err != nil || !ok {
			t.Fatalf("Approval: %v %v", ok, err)
		}
		if got.Digest != digestOf("aa") || got.KeyID != "key-1" || got.Note != "looked fine" ||
			!got.ApprovedAt.Equal(in[3].ApprovedAt) || !bytes.Equal(got.Envelope, in[3].Envelope) {
			t.Errorf("round trip: %+v", got)
		}
		if _, ok, _ := tx.Approval("alpha", KindInstructions, ""); !ok {
			t.Error("instructions approval missing")
		}
		if _, ok, _ := tx.Approval("alpha", KindTool, "missing"); ok {
			t.Error("found an approval never made")
		}
		if _, ok, _ := tx.Approval("nobody", KindTool, "a"); ok {
			t.Error("found an approval of an unknown server")
		}

		all, err := tx.Approvals("")
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, a := range all {
			keys = append(keys, a.Server+"/"+a.Kind+"/"+a.Tool)
		}
		want := []string{"alpha/instructions/", "alpha/tool/a", "alpha/tool/b", "zeta/tool/b"}
		if len(keys) != len(want) {
			t.Fatalf("Approvals(\"\") = %v, want %v", keys, want)
		}
		for i := range want {
			if keys[i] != want[i] {
				t.Fatalf("Approvals(\"\") = %v, want %v", keys, want)
			}
		}
		zeta, _ := tx.Approvals("zeta")
		if len(zeta) != 1 || zeta[0].Tool != "b" {
			t.Errorf("Approvals(zeta) = %+v", zeta)
		}
		none, err := tx.Approvals("nobody")
		if len(none) != 0 || err != nil {
			t.Errorf("Approvals(nobody) = %v, %v", none, err)
		}
		return nil
	})
}

func TestPutApprovalRejects(t *testing.T) {
	db := openTest(t)
	bad := map[string]ApprovalRecord{
		"no server":              approval("", KindTool, "a", "x"),
		"tool without name":      approval("s", KindTool, "", "x"),
		"instructions with tool": approval("s", KindInstructions, "a", "x"),
		"unknown kind":           approval("s", "prompt", "a", "x"),
		"bad digest":             func() ApprovalRecord { a := approval("s", KindTool, "a", "x"); a.Digest = "sha256:xyz"; return a }(),
	}
	for name, a := range bad {
		if err := db.Update(func(tx *Tx) error { return tx.PutApproval(a) }); err == nil {
			t.Errorf("%s: PutApproval succeeded", name)
		}
	}
}

func TestPutApprovalSupersedes(t *testing.T) {
	db := openTest(t)
	first, second := approval("s", KindTool, "a", "v1"), approval("s", KindTool, "a", "v2")
	if err := db.Update(func(tx *Tx) error {
		if err := tx.PutApproval(first); err != nil {
			return err
		}
		return tx.PutApproval(second)
	}); err != nil {
		t.Fatal(err)
	}
	_ = db.View(func(tx *Tx) error {
		cur, ok, _ := tx.Approval("s", KindTool, "a")
		if !ok || cur.Digest != digestOf("v2") || cur.Superseded {
			t.Errorf("current = %+v", cur)
		}
		h, err := tx.ApprovalHistory("s", "a")
		if err != nil {
			t.Fatal(err)
		}
		if len(h) != 1 || h[0].Digest != digestOf("v1") || !h[0].Superseded || !h[0].RevokedAt.IsZero() {
			t.Errorf("history = %+v", h)
		}
		return nil
	})
}

func TestRevokeMovesToHistory(t *testing.T) {
	db := openTest(t)
	at := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	if err := db.Update(func(tx *Tx) error {
		for _, a := range []ApprovalRecord{
			approval("s", KindTool, "a", "a1"),
			approval("s", KindTool, "b", "b1"),
			approval("s", KindInstructions, "", "i1"),
			approval("t", KindTool, "a", "ta"),
		} {
			if err := tx.PutApproval(a); err != nil {
				return err
			}
		}
		got, ok, err := tx.RevokeApproval("s", KindTool, "a", "drifted", at)
		if err != nil || !ok {
			t.Fatalf("RevokeApproval: %v %v", ok, err)
		}
		if got.Digest != digestOf("a1") || !got.RevokedAt.Equal(at) || got.RevokedReason != "drifted" {
			t.Errorf("revoked = %+v", got)
		}
		// Zero time takes Options.Now.
		got, ok, err = tx.RevokeApproval("s", KindInstructions, "", "by hand", time.Time{})
		if err != nil || !ok || got.RevokedAt.IsZero() {
			t.Fatalf("RevokeApproval(instructions): %+v %v %v", got, ok, err)
		}
		if _, ok, err := tx.RevokeApproval("s", KindTool, "a", "again", at); ok || err != nil {
			t.Errorf("second revoke: %v %v", ok, err)
		}
		if _, ok, err := tx.RevokeApproval("nobody", KindTool, "a", "x", at); ok || err != nil {
			t.Errorf("revoke of unknown server: %v %v", ok, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	_ = db.View(func(tx *Tx) error {
		if _, ok, _ := tx.Approval("s", KindTool, "a"); ok {
			t.Error("revoked approval still current")
		}
		if _, ok, _ := tx.Approval("s", KindTool, "b"); !ok {
			t.Error("revoke took a sibling with it")
		}
		cur, _ := tx.Approvals("s")
		if len(cur) != 1 || cur[0].Tool != "b" {
			t.Errorf("current after revokes = %+v", cur)
		}
		h, _ := tx.ApprovalHistory("s", "a")
		if len(h) != 1 || h[0].RevokedReason != "drifted" || !h[0].RevokedAt.Equal(at) {
			t.Errorf("history(s, a) = %+v", h)
		}
		if !bytes.Equal(h[0].Envelope, approval("s", KindTool, "a", "a1").Envelope) {
			t.Errorf("history envelope not verbatim: %q", h[0].Envelope)
		}
		all, _ := tx.ApprovalHistory("s", "")
		if len(all) != 2 || all[0].Tool != "a" || all[1].Kind != KindInstructions {
			t.Errorf("history(s) = %+v", all)
		}
		if h, _ := tx.ApprovalHistory("t", ""); len(h) != 0 {
			t.Errorf("history(t) = %+v", h)
		}
		if h, _ := tx.ApprovalHistory("", ""); len(h) != 2 {
			t.Errorf("history(all) = %+v", h)
		}
		return nil
	})
}
