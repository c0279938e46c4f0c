package signatures

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// realisticListing builds a tools/list result of n tools, each about 1 KB
// with a nested inputSchema, as a server would send it (pretty-printed,
// keys in no particular order).
func realisticListing(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"tools": [`)
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `
  {
    "name": "tool_%03d",
    "title": "Tool number %d",
    "description": "Fetches records from the remote catalogue and returns them as a list. Supports paging, filtering by tag and sorting by any indexed field. Use the cursor from a previous call to continue. Results are cached for sixty seconds \u2014 pass fresh=true to bypass.",
    "inputSchema": {
      "type": "object",
      "properties": {
        "query": {"type": "string", "description": "Free-text query; empty matches everything.", "maxLength": 512},
        "tags": {"type": "array", "items": {"type": "string"}, "description": "Only records carrying all of these tags."},
        "limit": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50},
        "cursor": {"type": "string", "description": "Opaque cursor returned by a previous call."},
        "sort": {"type": "string", "enum": ["created", "updated", "name", "size"], "default": "updated"},
        "fresh": {"type": "boolean", "default": false},
        "ratio": {"type": "number", "minimum": 0.0, "maximum": 1.0, "default": 0.25}
      },
      "required": ["query"],
      "additionalProperties": false
    },
    "annotations": {"readOnlyHint": true, "openWorldHint": true, "idempotentHint": true},
    "_meta": {"version": "1.%d.0"}
  }`, i, i, i)
	}
	b.WriteString("\n]}")
	return []byte(b.String())
}

func BenchmarkDigest50Tools(b *testing.B) {
	var listing struct {
		Tools []json.RawMessage `json:"tools"`
	}
	raw := realisticListing(50)
	if err := json.Unmarshal(raw, &listing); err != nil {
		b.Fatal(err)
	}
	total := 0
	for _, t := range listing.Tools {
		total += len(t)
	}
	b.SetBytes(int64(total))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for _, t := range listing.Tools {
			if _, _, err := Digest(t, Limits{}); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(len(listing.Tools)*b.N)/b.Elapsed().Seconds(), "tools/s")
	b.ReportMetric(float64(total)/float64(len(listing.Tools)), "bytes/tool")
}
