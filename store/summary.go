package store

import (
	"encoding/json"
	"fmt"
	"hash/maphash"
	"sync"
	"time"

	"github.com/rugwatch/rugwatch"
)

// ServerSummary is what a metrics scrape needs of one server: no
// definitions, no findings, only counts.
type ServerSummary struct {
	Name         string
	Reachable    bool
	LastPolledAt time.Time
	// States counts the server's tools by state.
	States map[rugwatch.State]int
}

// SummaryCache keeps the summary of every server whose stored bytes have
// not changed since the last read, so a scrape of 10,000 servers decodes
// only the records written since the one before (a full decode of 10,000
// records of 50 tools takes seconds; hashing their bytes, milliseconds).
// The zero value is ready; it is safe for concurrent use.
type SummaryCache struct {
	mu   sync.Mutex
	seed maphash.Seed
	m    map[string]summaryEntry
}

type summaryEntry struct {
	sum uint64
	s   ServerSummary
}

// summaryRelease is how many records ServerSummaries reads between
// releases of the mapped pages it read (see Tx.ReleaseMapped).
const summaryRelease = 256

// ServerSummaries summarises the stored servers in name order, at most
// limit of them (all if limit <= 0), and returns how many are stored.
// Records unchanged since c last saw them are not decoded again.
func (t *Tx) ServerSummaries(c *SummaryCache, limit int) ([]ServerSummary, int, error) {
	b, err := t.bucket(bucketServers)
	if err != nil {
		return nil, 0, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.seed = maphash.MakeSeed()
	}
	next := make(map[string]summaryEntry, len(c.m))
	var out []ServerSummary
	total := 0
	err = b.ForEach(func(k, v []byte) error {
		total++
		if total%summaryRelease == 0 {
			// Every scrape hashes every record: without this a 10,000
			// server store's records (160 MB) stay resident after each.
			// Only memory accounting is at stake.
			_ = t.ReleaseMapped()
		}
		if limit > 0 && len(out) >= limit {
			return nil
		}
		name := string(k)
		sum := maphash.Bytes(c.seed, v)
		if e, ok := c.m[name]; ok && e.sum == sum {
			next[name] = e
			out = append(out, t.polledSummary(e.s))
			return nil
		}
		// Only the fields a summary needs: the decoder skips the rest
		// (definitions, findings) without building them.
		var lean struct {
			Reachable    bool
			LastPolledAt time.Time
			Tools        map[string]struct{ State rugwatch.State }
		}
		if err := json.Unmarshal(v, &lean); err != nil {
			return fmt.Errorf("decode server %q: %w", k, err)
		}
		s := ServerSummary{Name: name, Reachable: lean.Reachable, LastPolledAt: lean.LastPolledAt, States: map[rugwatch.State]int{}}
		for _, tr := range lean.Tools {
			s.States[tr.State]++
		}
		next[name] = summaryEntry{sum: sum, s: s}
		out = append(out, t.polledSummary(s))
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	c.m = next
	return out, total, nil
}

// polledSummary is s with the time of its last poll: a poll that changed
// nothing leaves its time in the polled bucket, not in the record the
// cached summary was made of.
func (t *Tx) polledSummary(s ServerSummary) ServerSummary {
	if at, ok := t.LastPolled(s.Name); ok && at.After(s.LastPolledAt) {
		s.LastPolledAt = at
	}
	return s
}

// OutboxCount is how many deliveries of one channel are in one state.
type OutboxCount struct {
	Channel string
	State   string
	N       int
}

// OutboxCounts counts pending and dead deliveries by channel in one pass
// over the deliveries, decoding only two fields of each (dead ones have no
// index of their own).
func (t *Tx) OutboxCounts() ([]OutboxCount, error) {
	deliveries, _, _, err := t.outbox(false)
	if err != nil || deliveries == nil {
		return nil, err
	}
	type key struct{ ch, st string }
	n := map[key]int{}
	err = deliveries.ForEach(func(k, v []byte) error {
		var d struct {
			Channel string `json:"channel"`
			State   string `json:"state"`
		}
		if err := json.Unmarshal(v, &d); err != nil {
			return fmt.Errorf("decode delivery %s: %w", k, err)
		}
		if d.State == DeliveryPending || d.State == DeliveryDead {
			n[key{d.Channel, d.State}]++
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]OutboxCount, 0, len(n))
	for k, c := range n {
		out = append(out, OutboxCount{Channel: k.ch, State: k.st, N: c})
	}
	return out, nil
}
