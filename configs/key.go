package configs

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
)

// ServerKey captures everything about server s that a poll of it depends
// on — its own fields, the defaults it inherits and the limits — with
// secret references as written, never their values. The daemon restarts a
// server's job and watch session only when its key changes, so a reload
// that edits one server touches one server.
func (c *Config) ServerKey(s Server) string {
	s.Line = 0 // moving a server down the file changes nothing it does
	var b strings.Builder
	// %+v prints every field, including any added later; Secret values
	// print as <secret>, so their templates are written out below.
	fmt.Fprintf(&b, "%+v|%s|%v|", s, s.EffectiveSchedule(c.Defaults), s.EffectiveTimeout(c.Defaults))
	for _, m := range []map[string]Secret{s.Env, s.Headers} {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "%s=%s;", k, m[k].Template())
		}
		b.WriteString("|")
	}
	fmt.Fprintf(&b, "%+v|%+v|%+v", c.Defaults, c.Limits, c.ClientInfo)
	sum := sha256.Sum256([]byte(b.String()))
	return hex.EncodeToString(sum[:])
}
