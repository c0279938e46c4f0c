package configs

import (
	"slices"
	"testing"
)

// trusted_keys takes plain paths and {path, name, roles} side by side;
// approvals default to quorum 1 with no roles, and a server's own
// approvals replace the global ones.
func TestTrustedKeysAndApprovals(t *testing.T) {
	yml := "trusted_keys:\n  - keys/carol.pub\n  - {path: keys/alice.pub, name: alice, roles: [security]}\n  - path: keys/bob.pub\n    name: bob\n    roles: [platform]\n" +
		"approvals: {quorum: 2, require_roles: [security]}\n" +
		"servers:\n  - name: a\n    command: x\n  - name: b\n    command: y\n    approvals: {quorum: 1}\n"
	c, err := parse(t, yml)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.TrustedKeys) != 3 || c.Keys[1].Name != "alice" || !slices.Equal(c.Keys[2].Roles, []string{"platform"}) || c.Keys[0].Name != "" {
		t.Fatalf("keys: %+v paths %v", c.Keys, c.TrustedKeys)
	}
	for i, p := range c.TrustedKeys {
		if p != c.Keys[i].Path || p[0] != '/' {
			t.Errorf("trusted_keys[%d]: path %q, entry %q", i, p, c.Keys[i].Path)
		}
	}
	if a := c.Servers[0].Approvals; a.Quorum != 2 || !slices.Equal(a.RequireRoles, []string{"security"}) {
		t.Errorf("server a inherits %+v", a)
	}
	if a := c.Servers[1].Approvals; a.Quorum != 1 || a.RequireRoles != nil {
		t.Errorf("server b overrides to %+v, want quorum 1 and no roles", a)
	}

	plain, err := parse(t, "trusted_keys: [k.pub]\n"+okServer)
	if err != nil {
		t.Fatal(err)
	}
	if a := plain.Servers[0].Approvals; a.Quorum != 1 || a.RequireRoles != nil || plain.Approvals.Quorum != 1 {
		t.Errorf("default approvals %+v / %+v, want quorum 1, no roles", plain.Approvals, a)
	}
}

func TestTrustedKeysAndApprovalsErrors(t *testing.T) {
	tests := []struct{ name, yml, want string }{
		{"unknown key in a trusted key", "trusted_keys:\n  - {path: a.pub, nmae: alice}\n",
			`rugwatch.yaml:2: trusted_keys[0]: unknown key "nmae" (line 2); a trusted key has path, name and roles`},
		{"trusted key without path", "trusted_keys:\n  - a.pub\n  - name: bob\n",
			`rugwatch.yaml:3: trusted_keys[1]: needs path`},
		{"roles not a list", "trusted_keys:\n  - path: a.pub\n    roles: security\n",
			`rugwatch.yaml:2: trusted_keys[0]: roles (line 3) must be a list`},
		{"duplicate key name", "trusted_keys:\n  - {path: a.pub, name: alice}\n  - {path: b.pub, name: alice}\n",
			`rugwatch.yaml:3: trusted_keys[1].name: "alice" is also the name of trusted_keys[0]`},
		{"quorum above the keys", "trusted_keys: [a.pub, b.pub]\napprovals: {quorum: 3}\n",
			`rugwatch.yaml:2: approvals.quorum: is 3 but trusted_keys has only 2 keys; it could never be met`},
		{"quorum zero", "approvals:\n  quorum: 0\n",
			`rugwatch.yaml:2: approvals.quorum: must be at least 1`},
		{"role no key holds", "trusted_keys: [a.pub]\napprovals:\n  require_roles: [security]\n",
			`rugwatch.yaml:3: approvals.require_roles: role "security" is held by no key in trusted_keys (give one roles: [security])`},
		{"server quorum above the keys", "servers:\n  - name: a\n    command: x\n    approvals: {quorum: 2}\n",
			`rugwatch.yaml:4: servers[0] "a": approvals.quorum: is 2 but trusted_keys has only 1 keys; it could never be met`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parse(t, tt.yml)
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", c)
			}
			if !containsLine(err.Error(), tt.want) {
				t.Errorf("error lacks line\n%s\ngot:\n%v", tt.want, err)
			}
		})
	}
}
