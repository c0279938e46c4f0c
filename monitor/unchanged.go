package monitor

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/rugwatch/rugwatch/mcpclient"
	"github.com/rugwatch/rugwatch/store"
)

// The unchanged-listing fast path. A steady fleet's poll finds the same
// listing as the poll before and changes nothing, yet the full path
// canonicalises every tool, decodes the stored record with its 50
// definitions, evaluates and re-encodes it to find that out. Instead the
// Recorder keeps, per server, the fingerprint of the listing it last
// recorded (every page's exact bytes and all else a poll depends on, see
// Listing.Fingerprint) and a digest of the state that poll left: the
// record's stored bytes and every current approval of the server with
// whether its signature holds. A poll whose fingerprint matches skips the
// per-tool work, and is recorded as polled only if the state digest still
// matches inside the write transaction: then Evaluate would see the same
// listing, the same record and the same approvals and decide nothing. If
// anything moved in between (an approval, a revocation, a removed trusted
// key, another server's shadowing rewriting this record) the digest
// differs and the poll is listed and recorded again in full.

// ErrListingStale is returned by Record for an Unchanged listing whose
// server's state moved since its fingerprint was recorded; the poll must
// be listed again without the fast path.
var ErrListingStale = errors.New("unchanged listing, but the server's state moved since it was recorded")

// unchangedFor returns the DialOptions.Unchanged of a poll of server:
// true when the fingerprint is the one recorded at its last poll and the
// server's state is still the one that poll left. The state is checked
// again when the poll is recorded; checking it here as well keeps the
// fast path from being taken after an approval, which would make the
// poll list the server a second time (a server counts listings, and an
// extra one is an extra round trip to a possibly slow server).
func (r *Recorder) unchangedFor(server string) func([32]byte) bool {
	return func(fp [32]byte) bool {
		var same bool
		r.mu.Lock() // r.check's cache, as inside the write transaction
		defer r.mu.Unlock()
		_ = r.DB.View(func(tx *store.Tx) error {
			stored, want, ok := tx.ListingState(server)
			if !ok || stored != fp {
				return nil
			}
			have, ok, err := r.stateDigest(tx, server)
			same = err == nil && ok && have == want
			return nil
		})
		return same
	}
}

// stateDigest is the digest of what a poll of server evaluates besides
// its listing: the record's stored bytes and each current approval, with
// whether its signature holds now. false when no record is stored. Called
// inside the write transaction, under r.mu (r.check's cache).
func (r *Recorder) stateDigest(tx *store.Tx, server string) ([32]byte, bool, error) {
	rec, ok, err := tx.ServerDigest(server)
	if err != nil || !ok {
		return [32]byte{}, false, err
	}
	approvals, err := tx.Approvals(server)
	if err != nil {
		return [32]byte{}, false, err
	}
	h := sha256.New()
	fmt.Fprintf(h, "rugwatch state v1\x00%s\x00", server)
	h.Write(rec[:])
	if r.stateApprovalsOff {
		approvals = nil
	}
	for _, a := range approvals {
		ah := approvalHash(a)
		h.Write(ah[:])
		if r.check(a).Valid {
			h.Write([]byte{1})
		} else {
			h.Write([]byte{0})
		}
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out, true, nil
}

// recordUnchanged records an Unchanged listing as polled at now, if the
// server's state is still the one its fingerprint was recorded with.
// stale says it is not, and nothing was written.
func (r *Recorder) recordUnchanged(tx *store.Tx, server string, l *mcpclient.Listing, now time.Time) (stale bool, err error) {
	fp, want, ok := tx.ListingState(server)
	if !ok || fp != l.Fingerprint {
		return true, nil
	}
	have, ok, err := r.stateDigest(tx, server)
	if err != nil {
		return false, err
	}
	if !ok || have != want {
		return true, nil
	}
	return false, tx.MarkPolled(server, now)
}

// noteListing stores the fingerprint of a listing just recorded in full
// and the state it left, for the next poll's fast path. A listing taken
// per revision (its Revisions are no part of the fingerprint) is not.
func (r *Recorder) noteListing(tx *store.Tx, server string, l *mcpclient.Listing) error {
	if l == nil || l.Unchanged || l.Fingerprint == ([32]byte{}) || l.Revisions != nil {
		return nil
	}
	st, ok, err := r.stateDigest(tx, server)
	if err != nil || !ok {
		return err
	}
	return tx.PutListingState(server, l.Fingerprint, st)
}
