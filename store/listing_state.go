package store

import (
	"crypto/sha256"
	"errors"
	"fmt"
)

// bucketListings holds, per server, the fingerprint of the listing its
// last poll recorded and the digest of the state that poll left (the
// record's bytes, the approvals and their verdicts: see the monitor's
// Recorder), 64 bytes. A later poll whose listing has the same
// fingerprint while the state digest still matches changes nothing, and
// is recorded with MarkPolled alone, without decoding the record or
// canonicalising a tool. Created by the first write that needs it; a store
// without it, or a key without a value of 64 bytes, reads as no state, and
// the poll takes the full path.
var bucketListings = []byte("listings")

// ListingState returns what PutListingState stored for server.
func (t *Tx) ListingState(server string) (fingerprint, state [32]byte, ok bool) {
	if t.tx.ended() {
		return fingerprint, state, false
	}
	b := t.tx.Bucket(bucketListings)
	if b == nil {
		return fingerprint, state, false
	}
	v := b.Get([]byte(server))
	if len(v) != 64 {
		return fingerprint, state, false
	}
	copy(fingerprint[:], v[:32])
	copy(state[:], v[32:])
	return fingerprint, state, true
}

// PutListingState stores the fingerprint of server's recorded listing and
// the digest of the state it left.
func (t *Tx) PutListingState(server string, fingerprint, state [32]byte) error {
	if t.tx.ended() {
		return ErrTxClosed
	}
	if server == "" {
		return errors.New("put listing state: empty server name")
	}
	b, err := t.tx.CreateBucketIfNotExists(bucketListings)
	if err != nil {
		return fmt.Errorf("create listings bucket: %w", err)
	}
	b.fillPercent(0.9) // rewritten in place, never grows per poll
	v := make([]byte, 0, 64)
	v = append(append(v, fingerprint[:]...), state[:]...)
	if err := b.Put([]byte(server), v); err != nil {
		return fmt.Errorf("put listing state of %q: %w", server, err)
	}
	return nil
}

// ServerDigest is the SHA-256 of server's record as stored; false if
// none is. Comparing it costs a hash of the bytes, not a decode.
func (t *Tx) ServerDigest(server string) ([32]byte, bool, error) {
	b, err := t.bucket(bucketServers)
	if err != nil {
		return [32]byte{}, false, err
	}
	v := b.Get([]byte(server))
	if v == nil {
		return [32]byte{}, false, nil
	}
	return sha256.Sum256(v), true, nil
}
