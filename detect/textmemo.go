package detect

import "sync"

// memoMaxLen is the longest string a TextMemo remembers: member names and
// parameter descriptions repeat across a fleet, a tool's own description
// rarely does, and a long one would make the memory hostile servers can
// fill larger.
const memoMaxLen = 256

// memoMaxEntries bounds a TextMemo; when full it starts again empty, so a
// server sending endless distinct strings costs misses, never memory.
const memoMaxEntries = 1 << 16

type memoKey struct {
	s    string
	kind textKind
	what string
}

// TextMemo remembers what the text rules found in short strings, for
// Findings over a fleet's definitions (FindingContext.Memo). The rules
// are a function of the string alone, so a remembered answer is the
// answer. Safe for concurrent use; the zero value is ready.
type TextMemo struct {
	mu sync.Mutex
	m  map[memoKey][]textFinding
}

// get returns the remembered findings of k, computing and remembering
// them with find when there are none.
func (t *TextMemo) get(k memoKey, find func() []textFinding) []textFinding {
	t.mu.Lock()
	f, ok := t.m[k]
	t.mu.Unlock()
	if ok {
		return f
	}
	f = find()
	t.mu.Lock()
	if t.m == nil || len(t.m) >= memoMaxEntries {
		t.m = make(map[memoKey][]textFinding)
	}
	t.m[k] = f
	t.mu.Unlock()
	return f
}
