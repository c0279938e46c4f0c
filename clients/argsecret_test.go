package clients

import "testing"

// TestArgSecret: a credential in a server's args is found whatever its
// spelling, so install never copies it into rugwatch's config; ordinary
// args pass.
func TestArgSecret(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"-y", "@modelcontextprotocol/server-postgres", "postgresql://admin:hunter2secret@db.internal/prod"}, 2},
		{[]string{"-y", "some-server", "--token=sk-live-abcdefghijklmnop1234"}, 2},
		{[]string{"--api-key", "abc123def456ghi789jkl012mno"}, 1},
		{[]string{"--access-token", "short"}, 1},
		{[]string{"ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"}, 0},
		{[]string{"-y", "@modelcontextprotocol/server-filesystem@2026.8.31", "/home/me/projects"}, -1},
		{[]string{"--api-key", "${env:API_KEY}"}, -1},
		{[]string{"--port", "8080", "--headless"}, -1},
		{[]string{"postgresql://db.internal/prod"}, -1},
	} {
		if got := argSecret(tc.args); got != tc.want {
			t.Errorf("argSecret(%q) = %d, want %d", tc.args, got, tc.want)
		}
	}
}
