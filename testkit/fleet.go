package testkit

import (
	"encoding/json"
	"fmt"
	"strings"
)

// FleetTool is one realistic tool definition of the fleet benchmark
// (cmd/rugwatch) and of the findings tests that run over it (monitor): a description of a few
// sentences, an input schema of a few typed properties, annotations.
func FleetTool(server, i int) []byte {
	verbs := []string{"create", "list", "get", "update", "delete", "search", "sync", "export", "import", "archive"}
	nouns := []string{"issue", "file", "record", "invoice", "ticket"}
	// Names are the server's own (svc12_create_issue), as in a real
	// fleet: the same 50 names on every server would make every tool
	// shadow every other server's, a quadratic pile of findings.
	name := fmt.Sprintf("svc%d_%s_%s", server, verbs[i%len(verbs)], nouns[(i/len(verbs))%len(nouns)])
	desc := fmt.Sprintf("%s a %s in the workspace of service %d. Returns the %s as JSON with its id, owner, timestamps and labels. "+
		"Use the cursor from a previous call to page through long results; at most 100 items are returned per call. "+
		"Requires the workspace to be connected; fails with a clear error otherwise.",
		strings.ToUpper(verbs[i%len(verbs)][:1])+verbs[i%len(verbs)][1:], nouns[(i/len(verbs))%len(nouns)], server, nouns[(i/len(verbs))%len(nouns)])
	tool := map[string]any{
		"name":        name,
		"title":       strings.ReplaceAll(name, "_", " "),
		"description": desc,
		"inputSchema": map[string]any{
			"type": "object",
			"properties": map[string]any{
				"workspace": map[string]any{"type": "string", "description": "Workspace id, e.g. ws_123."},
				"id":        map[string]any{"type": "string", "description": "The item's id."},
				"cursor":    map[string]any{"type": "string", "description": "Opaque cursor from a previous page."},
				"limit":     map[string]any{"type": "integer", "minimum": 1, "maximum": 100},
				"labels":    map[string]any{"type": "array", "items": map[string]any{"type": "string"}},
			},
			"required": []string{"workspace"},
		},
		"annotations": map[string]any{"readOnlyHint": i%10 == 1 || i%10 == 2 || i%10 == 5, "openWorldHint": false},
	}
	b, _ := json.Marshal(tool) // sorted keys, no spaces: already canonical
	return b
}
