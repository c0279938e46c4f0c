package detect

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

// TestToolIndexModel: any sequence of SetServer calls leaves the index
// answering lookups and candidates as a plain map of every server's
// current tools would.
func TestToolIndexModel(t *testing.T) {
	names := []string{"read", "Read", "write", "svc_read", "a.b", "list files", "x"}
	servers := []string{"s1", "s2", "s3"}
	rapid.Check(t, func(rt *rapid.T) {
		x := NewToolIndex(nil)
		model := map[string][]string{}
		for i := range rapid.IntRange(1, 30).Draw(rt, "ops") {
			srv := rapid.SampledFrom(servers).Draw(rt, fmt.Sprintf("server%d", i))
			tools := rapid.SliceOfNDistinct(rapid.SampledFrom(names), 0, 4, rapid.ID[string]).Draw(rt, fmt.Sprintf("tools%d", i))
			x.SetServer(srv, tools)
			model[srv] = tools
			for _, n := range names {
				var want []ToolRef
				for s, ts := range model {
					for _, t := range ts {
						// The index keys names by strings.ToLower, so the
						// model does too (EqualFold folds more).
						if lt, ln := strings.ToLower(t), strings.ToLower(n); lt == ln {
							want = append(want, ToolRef{s, t})
						}
					}
				}
				got := x.Lookup(strings.ToLower(n))
				sortRefs(want)
				sortRefs(got)
				if !reflect.DeepEqual(got, want) {
					rt.Fatalf("after op %d, lookup(%q) = %v, want %v", i, n, got, want)
				}
			}
			var odd []ToolRef
			for s, ts := range model {
				for _, t := range ts {
					if strings.ContainsAny(t, ". ") {
						odd = append(odd, ToolRef{s, t})
					}
				}
			}
			var gotOdd []ToolRef
			for id := range x.odd {
				gotOdd = append(gotOdd, x.ref(id))
			}
			sortRefs(odd)
			sortRefs(gotOdd)
			if !reflect.DeepEqual(gotOdd, odd) {
				rt.Fatalf("after op %d, odd = %v, want %v", i, gotOdd, odd)
			}
		}
	})
}

func sortRefs(r []ToolRef) {
	sort.Slice(r, func(i, j int) bool { return r[i].Server+"\x00"+r[i].Tool < r[j].Server+"\x00"+r[j].Tool })
}
