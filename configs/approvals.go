package configs

import (
	"errors"
	"fmt"
	"slices"

	"go.yaml.in/yaml/v3"
)

// TrustedKey is one entry of trusted_keys: a plain path (a key of no name
// and no roles) or {path, name, roles}.
type TrustedKey struct {
	Path  string
	Name  string
	Roles []string
}

// UnmarshalYAML reads a plain path or a {path, name, roles} mapping,
// strictly: an unknown or repeated key is an error, as anywhere else in
// the config.
func (k *TrustedKey) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		k.Path = n.Value
		return nil
	case yaml.MappingNode:
	default:
		return errors.New("must be a path or {path, name, roles}")
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i], n.Content[i+1]
		if seen[key.Value] {
			return fmt.Errorf("duplicate key %q (line %d)", key.Value, key.Line)
		}
		seen[key.Value] = true
		switch key.Value {
		case "path", "name":
			if val.Kind != yaml.ScalarNode {
				return fmt.Errorf("%s (line %d) must be a string", key.Value, val.Line)
			}
			if key.Value == "path" {
				k.Path = val.Value
			} else {
				k.Name = val.Value
			}
		case "roles":
			if val.Kind != yaml.SequenceNode {
				return fmt.Errorf("roles (line %d) must be a list", val.Line)
			}
			for _, r := range val.Content {
				if r.Kind != yaml.ScalarNode || r.Value == "" {
					return fmt.Errorf("roles (line %d) must be non-empty strings", r.Line)
				}
				k.Roles = append(k.Roles, r.Value)
			}
		default:
			return fmt.Errorf("unknown key %q (line %d); a trusted key has path, name and roles", key.Value, key.Line)
		}
	}
	if k.Path == "" {
		return errors.New("needs path")
	}
	return nil
}

// Approvals is how many signatures an approval needs, globally or for one
// server (a server's approvals replace the global ones as a whole).
type Approvals struct {
	// Quorum is how many distinct trusted keys must sign; default 1.
	Quorum int `yaml:"quorum"`
	// RequireRoles: at least one signature from a key holding each.
	RequireRoles []string `yaml:"require_roles"`
}

// applyApprovalDefaults gives the global approvals quorum 1 and every
// server without its own approvals the global ones.
func (c *Config) applyApprovalDefaults() {
	if c.Approvals.Quorum == 0 && !c.has("approvals.quorum") {
		c.Approvals.Quorum = 1
	}
	if len(c.TrustedKeys) == 0 {
		for _, k := range c.Keys {
			c.TrustedKeys = append(c.TrustedKeys, k.Path)
		}
	}
	for i := range c.Servers {
		s := &c.Servers[i]
		p := fmt.Sprintf("servers[%d].approvals", i)
		if !c.has(p) && s.Approvals.Quorum == 0 && s.Approvals.RequireRoles == nil {
			s.Approvals = c.Approvals
			continue
		}
		if s.Approvals.Quorum == 0 && !c.has(p+".quorum") {
			s.Approvals.Quorum = 1
		}
	}
}

// validateApprovals checks that every quorum can be met by the trusted
// keys: no more signatures than keys, no role no key holds.
func (v *validator) validateApprovals(c *Config) {
	names := map[string]int{}
	for i, k := range c.Keys {
		p := fmt.Sprintf("trusted_keys[%d]", i)
		if k.Name == "" {
			continue
		}
		if first, dup := names[k.Name]; dup {
			v.fail(p+".name", "%q is also the name of trusted_keys[%d]", k.Name, first)
		}
		names[k.Name] = i
	}
	v.approvals("approvals", c.Approvals, c)
	for i, s := range c.Servers {
		v.approvals(fmt.Sprintf("servers[%d].approvals", i), s.Approvals, c)
	}
}

func (v *validator) approvals(p string, a Approvals, c *Config) {
	if a.Quorum < 1 {
		v.fail(p+".quorum", "must be at least 1")
	} else if a.Quorum > len(c.TrustedKeys) {
		v.fail(p+".quorum", "is %d but trusted_keys has only %d keys; it could never be met", a.Quorum, len(c.TrustedKeys))
	}
	for _, r := range a.RequireRoles {
		if !slices.ContainsFunc(c.Keys, func(k TrustedKey) bool { return slices.Contains(k.Roles, r) }) {
			v.fail(p+".require_roles", "role %q is held by no key in trusted_keys (give one roles: [%s])", r, r)
		}
	}
}
