package store

import (
	"crypto/rand"
	"sync"
	"time"
)

// crockford is the ULID alphabet: no I, L, O, U, and it sorts like the bytes
// it encodes.
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// idSource makes event ids of 26 Crockford base32 characters: 48 bits of
// Unix milliseconds then 80 random bits, as in ULID. Within one DB ids
// strictly increase even when the clock stalls or steps back: the last
// millisecond is reused and the random part incremented.
type idSource struct {
	mu   sync.Mutex
	ms   uint64
	rnd  [10]byte
	init bool
}

func (s *idSource) next(now time.Time) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ms := uint64(max(now.UnixMilli(), 0)) & (1<<48 - 1)
	if s.init && ms <= s.ms {
		ms = s.ms
		if !increment(&s.rnd) {
			ms++
			rand.Read(s.rnd[:])
		}
	} else {
		rand.Read(s.rnd[:])
	}
	s.ms, s.init = ms, true

	var b [16]byte
	for i := range 6 {
		b[i] = byte(ms >> (40 - 8*i))
	}
	copy(b[6:], s.rnd[:])
	return encodeID(b)
}

// increment adds one to the big-endian r; false on overflow.
func increment(r *[10]byte) bool {
	for i := len(r) - 1; i >= 0; i-- {
		r[i]++
		if r[i] != 0 {
			return true
		}
	}
	return false
}

// encodeID writes 128 bits as 26 base32 digits, the first carrying the top
// 3 bits.
func encodeID(b [16]byte) string {
	var out [26]byte
	hi := uint64(b[0])<<56 | uint64(b[1])<<48 | uint64(b[2])<<40 | uint64(b[3])<<32 |
		uint64(b[4])<<24 | uint64(b[5])<<16 | uint64(b[6])<<8 | uint64(b[7])
	lo := uint64(b[8])<<56 | uint64(b[9])<<48 | uint64(b[10])<<40 | uint64(b[11])<<32 |
		uint64(b[12])<<24 | uint64(b[13])<<16 | uint64(b[14])<<8 | uint64(b[15])
	for i := 25; i >= 0; i-- {
		out[i] = crockford[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out[:])
}
