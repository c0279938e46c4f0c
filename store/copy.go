package store

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Moving a store between backends (bbolt to PostgreSQL) copies the bucket
// tree itself, not the records: every bucket, key, value byte and bucket
// sequence, so that the event chain's digests (taken over the bytes as
// stored), the approvals' envelopes and the outbox's indexes arrive
// exactly as they were, whatever this binary's record types would make of
// them.

// ErrNotEmpty is wrapped when CopyTo's destination already holds a store
// with something in it: a copy merged into another store's records and
// chain would be neither.
var ErrNotEmpty = errors.New("the destination already holds rugwatch data")

// ErrCopyDiffers is wrapped when a copy does not read back as its source:
// a bucket, key, value or sequence differs, or the destination's chain
// does not end at the source's head.
var ErrCopyDiffers = errors.New("the copy differs from its source")

// CopyReport is what a copy holds, counted as it was found again in the
// destination.
type CopyReport struct {
	// Buckets counts every bucket, nested ones included.
	Buckets int
	// Keys counts the values (a nested bucket is counted as a bucket).
	Keys int
	// Bytes is the length of those keys and values together.
	Bytes int64
	// Events is how many event records the destination's chain check
	// walked, and Head where that chain ends (the source's head).
	Events int
	Head   Head
}

// CopyTo copies the whole store into dst: one read transaction of db,
// one write transaction of dst, which is compared with db before it
// commits. dst must be a store this binary opened (so at its schema) that
// holds nothing yet: OpenPostgres of an empty database gives one. db's
// event chain must verify first; a broken chain is for `rugwatch verify`
// to explain, not something to carry into a new home.
//
// After the commit the copy is checked again, as committed: both trees
// walked and compared bucket by bucket and key by key, and dst's chain
// recomputed, which must end at db's head. Nothing must write to db
// meanwhile (the command holds the file's lock); an error that wraps
// ErrCopyDiffers after the commit leaves dst holding the copy that
// differs, for inspection.
func (db *DB) CopyTo(dst *DB) (CopyReport, error) {
	if db == dst || db.bolt != nil && dst.bolt != nil && db.path == dst.path {
		return CopyReport{}, fmt.Errorf("copy store %s: it is its own destination", db.path)
	}
	var srcHead Head
	err := db.kv.view(func(stx kvTx) error {
		if err := atSchema(stx); err != nil {
			return fmt.Errorf("source: %w", err)
		}
		head, _, err := walkChain(stx.Bucket(bucketEvents), stx.Bucket(bucketMeta), Head{})
		if err != nil {
			return fmt.Errorf("the source does not verify (run `rugwatch verify`): %w", err)
		}
		srcHead = head
		return dst.kv.update(func(dtx kvTx) error {
			if err := atSchema(dtx); err != nil {
				return fmt.Errorf("destination: %w", err)
			}
			if err := refuseData(stx, dtx); err != nil {
				return err
			}
			if err := copyTree(stx, dtx); err != nil {
				return fmt.Errorf("write the copy: %w", err)
			}
			// Read back before committing, so a copy that differs is
			// never committed in the first place.
			_, err := compareTrees(stx, dtx)
			return err
		})
	})
	if err != nil {
		return CopyReport{}, fmt.Errorf("copy store %s to %s: %w", db.path, dst.path, err)
	}
	rep, err := db.CompareTo(dst)
	if err != nil {
		return rep, err
	}
	if rep.Head != srcHead {
		return rep, fmt.Errorf("verify copy %s: %w: its chain ends at %s, the source's at %s", dst.path, ErrCopyDiffers, rep.Head, srcHead)
	}
	return rep, nil
}

// CompareTo checks that dst holds exactly what db holds: both trees
// walked from one read transaction each, every bucket, key, value and
// sequence compared, and dst's event chain recomputed. An error names
// the first difference by bucket path and key, never by value.
func (db *DB) CompareTo(dst *DB) (CopyReport, error) {
	var rep CopyReport
	var srcHead Head
	err := db.kv.view(func(stx kvTx) error {
		return dst.kv.view(func(dtx kvTx) error {
			var err error
			rep, err = compareTrees(stx, dtx)
			if err != nil {
				return err
			}
			srcHead, _, err = walkChain(stx.Bucket(bucketEvents), stx.Bucket(bucketMeta), Head{})
			return err
		})
	})
	if err != nil {
		return CopyReport{}, fmt.Errorf("verify copy %s: %w", dst.path, err)
	}
	head, n, err := dst.VerifyChainHead()
	if err != nil {
		return rep, fmt.Errorf("verify copy %s: %w", dst.path, err)
	}
	if head != srcHead {
		return rep, fmt.Errorf("verify copy %s: %w: its chain ends at %s, the source's at %s", dst.path, ErrCopyDiffers, head, srcHead)
	}
	rep.Events, rep.Head = n, head
	return rep, nil
}

// atSchema refuses a store that is not at this binary's schema: the
// copy's shape is the source's, and the destination's code must read it.
func atSchema(tx kvTx) error {
	v, err := schemaVersion(tx)
	if err != nil {
		return err
	}
	if want := SchemaVersion(); v != want {
		return fmt.Errorf("store schema is v%d, this rugwatch copies v%d (open it read-write once to migrate)", v, want)
	}
	return nil
}

// refuseData fails unless dst holds nothing but what opening it made:
// buckets the source has too, empty, with sequence zero, and meta's
// schema version (which atSchema compared). What it finds is named by
// top-level bucket, so the user can tell a wrong database from a retry.
func refuseData(src, dst kvTx) error {
	found := map[string]int{}
	var walk func(s, d kvBucket, top, path string) error
	walk = func(s, d kvBucket, top, path string) error {
		if d.Sequence() != 0 {
			found[top]++
		}
		return d.ForEach(func(k, v []byte) error {
			if v != nil {
				if top != string(bucketMeta) || !bytes.Equal(k, keySchema) {
					found[top]++
				}
				return nil
			}
			var sub kvBucket
			if s != nil {
				sub = s.Bucket(k)
			}
			if sub == nil {
				found[top]++
			}
			return walk(sub, d.Bucket(k), top, path+"/"+keyName(k))
		})
	}
	err := dst.ForEach(func(name []byte, d kvBucket) error {
		s := src.Bucket(name)
		if s == nil {
			found[string(name)]++
		}
		return walk(s, d, string(name), keyName(name))
	})
	if err != nil {
		return err
	}
	if len(found) == 0 {
		return nil
	}
	var parts []string
	for top, n := range found {
		parts = append(parts, fmt.Sprintf("%s: %d", keyName([]byte(top)), n))
	}
	sort.Strings(parts)
	return fmt.Errorf("%w (%s); copy into an empty database", ErrNotEmpty, strings.Join(parts, ", "))
}

// copyTree writes every bucket of src into dst. The source is walked
// with ForEach, whose result carries a read error the PostgreSQL backend
// kept (its cursors stop short on one), so a failed read fails the copy
// instead of committing part of it.
func copyTree(src, dst kvTx) error {
	return src.ForEach(func(name []byte, s kvBucket) error {
		d, err := dst.CreateBucketIfNotExists(name)
		if err != nil {
			return fmt.Errorf("create bucket %s: %w", keyName(name), err)
		}
		return copyBucket(s, d, keyName(name))
	})
}

func copyBucket(src, dst kvBucket, path string) error {
	err := src.ForEach(func(k, v []byte) error {
		if v != nil {
			if err := dst.Put(k, v); err != nil {
				return fmt.Errorf("put %s %s: %w", path, keyName(k), err)
			}
			return nil
		}
		sub, err := dst.CreateBucketIfNotExists(k)
		if err != nil {
			return fmt.Errorf("create bucket %s/%s: %w", path, keyName(k), err)
		}
		return copyBucket(src.Bucket(k), sub, path+"/"+keyName(k))
	})
	if err != nil {
		return err
	}
	if err := dst.SetSequence(src.Sequence()); err != nil {
		return fmt.Errorf("set the sequence of %s: %w", path, err)
	}
	return nil
}

// compareTrees walks src and dst side by side and counts what matched.
func compareTrees(src, dst kvTx) (CopyReport, error) {
	var rep CopyReport
	names := func(tx kvTx) ([][]byte, error) {
		var out [][]byte
		err := tx.ForEach(func(name []byte, _ kvBucket) error {
			out = append(out, bytes.Clone(name))
			return nil
		})
		return out, err
	}
	sn, err := names(src)
	if err != nil {
		return rep, err
	}
	dn, err := names(dst)
	if err != nil {
		return rep, err
	}
	if err := sameNames(sn, dn, ""); err != nil {
		return rep, err
	}
	for _, n := range sn {
		rep.Buckets++
		if err := compareBuckets(src.Bucket(n), dst.Bucket(n), keyName(n), &rep); err != nil {
			return rep, err
		}
	}
	// A read error the PostgreSQL backend kept shows here, not as a
	// shorter tree that happened to match.
	for _, tx := range []kvTx{src, dst} {
		if err := tx.ForEach(func([]byte, kvBucket) error { return nil }); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

func sameNames(src, dst [][]byte, path string) error {
	for i := 0; i < len(src) || i < len(dst); i++ {
		switch {
		case i >= len(dst) || i < len(src) && bytes.Compare(src[i], dst[i]) < 0:
			return fmt.Errorf("%w: bucket %s%s missing from the copy", ErrCopyDiffers, path, keyName(src[i]))
		case i >= len(src) || !bytes.Equal(src[i], dst[i]):
			return fmt.Errorf("%w: the copy has bucket %s%s, the source does not", ErrCopyDiffers, path, keyName(dst[i]))
		}
	}
	return nil
}

// compareBuckets compares two buckets key by key in order, nested
// buckets recursively, then their sequences.
func compareBuckets(s, d kvBucket, path string, rep *CopyReport) error {
	sc, dc := s.Cursor(), d.Cursor()
	sk, sv := sc.First()
	dk, dv := dc.First()
	for sk != nil || dk != nil {
		switch {
		case dk == nil || sk != nil && bytes.Compare(sk, dk) < 0:
			return fmt.Errorf("%w: %s: key %s missing from the copy", ErrCopyDiffers, path, keyName(sk))
		case sk == nil || !bytes.Equal(sk, dk):
			return fmt.Errorf("%w: %s: the copy has key %s, the source does not", ErrCopyDiffers, path, keyName(dk))
		case sv == nil && dv == nil:
			rep.Buckets++
			if err := compareBuckets(s.Bucket(sk), d.Bucket(dk), path+"/"+keyName(sk), rep); err != nil {
				return err
			}
		case sv == nil || dv == nil:
			return fmt.Errorf("%w: %s: key %s is a bucket on one side and a value on the other", ErrCopyDiffers, path, keyName(sk))
		case !bytes.Equal(sv, dv):
			return fmt.Errorf("%w: %s: the value of key %s differs", ErrCopyDiffers, path, keyName(sk))
		default:
			rep.Keys++
			rep.Bytes += int64(len(sk) + len(sv))
		}
		sk, sv = sc.Next()
		dk, dv = dc.Next()
	}
	if ss, ds := s.Sequence(), d.Sequence(); ss != ds {
		return fmt.Errorf("%w: %s: sequence %d in the copy, %d in the source", ErrCopyDiffers, path, ds, ss)
	}
	return nil
}

// keyName shows a key in an error: as it is when it is printable, else
// quoted with escapes (event seqs, approval keys with their NUL).
func keyName(k []byte) string {
	for _, c := range k {
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return fmt.Sprintf("%q", k)
		}
	}
	return string(k)
}
