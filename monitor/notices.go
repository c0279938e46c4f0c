package monitor

import (
	"sync"
	"time"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/detect"
)

// noticeWindow is how long a warning on a tool's results or arguments,
// once recorded, is not recorded again for the same tool and rules.
const noticeWindow = time.Hour

// maxNotices bounds what Notices remembers. Full of unexpired entries,
// it remembers nothing new, and every further warning is recorded: a
// bound on memory must never become a reason to stay silent.
const maxNotices = 4096

// Notices remembers the warnings on tool results and arguments (both
// FlagResult) this process recorded in the last hour, so that the same
// warning from the same tool is one event an hour, however many calls or
// sessions see it: a client that opens a session per conversation
// through proxy_listen, or stdio proxies that reach the daemon, each saw
// it first and each wrote an event and sent an alert, and a browser tool
// opening localhost did on every call. A session of the proxy keeps one
// of its own for its results' warnings, which spares it asking the
// daemon. Critical findings, and so every refused call, are never held
// back. A warning is remembered when First lets it through; one whose
// event was then not written is forgotten (Forget), or an outage would
// lose it for the hour. It lives as long as its owner; the zero value is
// ready and a nil one remembers nothing. Safe for concurrent use.
type Notices struct {
	mu sync.Mutex
	m  map[string]time.Time // when a key was last recorded
	// swept is when a full m was last cleared of expired keys: at most
	// once a minute, so that a fleet that fills it does not pay a sweep
	// of every key on every warning.
	swept time.Time
}

// sweepEvery is how often a full Notices looks for expired keys.
const sweepEvery = time.Minute

// First reports whether findings (warnings only, no critical one) on a
// call of server's tool are to be recorded at now, and if so remembers
// them.
func (n *Notices) First(server, tool string, findings []rugwatch.Finding, now time.Time) bool {
	if n == nil || detect.MaxSeverity(findings) == rugwatch.SeverityCritical {
		return true
	}
	key := noticeKey(server, tool, findings)
	n.mu.Lock()
	defer n.mu.Unlock()
	if at, ok := n.m[key]; ok && now.Sub(at) < noticeWindow {
		return false
	}
	if n.m == nil {
		n.m = map[string]time.Time{}
	}
	if len(n.m) >= maxNotices && now.Sub(n.swept) >= sweepEvery {
		n.swept = now
		for k, at := range n.m {
			if now.Sub(at) >= noticeWindow {
				delete(n.m, k)
			}
		}
	}
	if len(n.m) < maxNotices {
		n.m[key] = now
	}
	return true
}

// Forget undoes First for findings whose event was not written.
func (n *Notices) Forget(server, tool string, findings []rugwatch.Finding) {
	if n == nil {
		return
	}
	n.mu.Lock()
	delete(n.m, noticeKey(server, tool, findings))
	n.mu.Unlock()
}

func noticeKey(server, tool string, findings []rugwatch.Finding) string {
	return server + "\x00" + tool + "\x00" + detect.RuleSet(findings)
}
