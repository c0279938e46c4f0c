package store

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strconv"
)

// Top-level bucket names and meta keys; see the tree in doc.go.
var (
	bucketMeta            = []byte("meta")
	bucketServers         = []byte("servers")
	bucketApprovals       = []byte("approvals")
	bucketApprovalHistory = []byte("approval_history")
	bucketEvents          = []byte("events")
	bucketOutbox          = []byte("outbox")

	keySchema = []byte("schema")
	keyHead   = []byte("head")
)

// migration moves the file from version-1 to version. apply runs inside the
// one write transaction that applies every pending migration, so a failure
// leaves the file as it was.
type migration struct {
	version uint64
	name    string
	apply   func(kvTx) error
}

// migrations is append only: never edit or reorder a released entry, add a
// new version instead.
var migrations = []migration{
	{version: 1, name: "create buckets", apply: func(tx kvTx) error {
		return createBuckets(tx, bucketMeta, bucketServers, bucketApprovals, bucketApprovalHistory, bucketEvents)
	}},
	{version: 2, name: "create outbox", apply: func(tx kvTx) error {
		return createBuckets(tx, bucketOutbox)
	}},
	{version: 3, name: "create outbox indexes", apply: func(tx kvTx) error {
		// deliveries, due and order; a v2 file that already queued
		// deliveries has them and keeps its contents.
		root := tx.Bucket(bucketOutbox)
		for _, n := range [][]byte{bucketDeliveries, bucketDue, bucketOrder} {
			if _, err := root.CreateBucketIfNotExists(n); err != nil {
				return fmt.Errorf("create outbox bucket %q: %w", n, err)
			}
		}
		return nil
	}},
	{version: 4, name: "backfill transition seqs", apply: backfillTransitions},
	{version: 5, name: "create outbox disabled channels", apply: func(tx kvTx) error {
		// Channels a 410 Gone disabled, kept until `alerts enable`.
		if _, err := tx.Bucket(bucketOutbox).CreateBucketIfNotExists(bucketDisabled); err != nil {
			return fmt.Errorf("create outbox bucket %q: %w", bucketDisabled, err)
		}
		return nil
	}},
	{version: 6, name: "move definitions out of server records", apply: moveDefinitions},
}

// moveDefinitions takes every tool's Definition out of its server's
// record into definitions/<server> (see bucketDefinitions).
func moveDefinitions(tx kvTx) error {
	defs, err := tx.CreateBucketIfNotExists(bucketDefinitions)
	if err != nil {
		return fmt.Errorf("create bucket %q: %w", bucketDefinitions, err)
	}
	return editRecords(tx, func(k []byte, _ map[string]json.RawMessage, tools map[string]map[string]json.RawMessage) (bool, error) {
		if len(tools) == 0 {
			return false, nil
		}
		moved := map[string]json.RawMessage{}
		for name, obj := range tools {
			if d := obj["Definition"]; len(d) > 0 && string(d) != "null" {
				moved[name] = d
			}
			delete(obj, "Definition")
		}
		if len(moved) > 0 {
			v, err := encode(moved)
			if err != nil {
				return false, fmt.Errorf("encode definitions of %q: %w", k, err)
			}
			if err := defs.Put(k, v); err != nil {
				return false, fmt.Errorf("put definitions of %q: %w", k, err)
			}
		}
		return true, nil
	})
}

// editRecords lets edit change every server record as raw JSON objects,
// so fields a migration does not know keep their exact bytes: edit gets
// the record's name, its members and its tools' members (nil when it has
// none) and says whether it changed them. Changed records are written
// back after the walk, as bbolt forbids writing the bucket it iterates.
func editRecords(tx kvTx, edit func(name []byte, rec map[string]json.RawMessage, tools map[string]map[string]json.RawMessage) (bool, error)) error {
	servers := tx.Bucket(bucketServers)
	updated := map[string][]byte{}
	err := servers.ForEach(func(k, v []byte) error {
		var rec map[string]json.RawMessage
		if err := json.Unmarshal(v, &rec); err != nil {
			return fmt.Errorf("decode server %q: %w", k, err)
		}
		var tools map[string]map[string]json.RawMessage
		if raw := rec["Tools"]; len(raw) > 0 && string(raw) != "null" {
			if err := json.Unmarshal(raw, &tools); err != nil {
				return fmt.Errorf("decode tools of server %q: %w", k, err)
			}
		}
		changed, err := edit(k, rec, tools)
		if err != nil || !changed {
			return err
		}
		if tools != nil {
			raw, err := encode(tools)
			if err != nil {
				return fmt.Errorf("encode tools of server %q: %w", k, err)
			}
			rec["Tools"] = raw
		}
		out, err := encode(rec)
		if err != nil {
			return fmt.Errorf("encode server %q: %w", k, err)
		}
		updated[string(k)] = out
		return nil
	})
	if err != nil {
		return err
	}
	for k, v := range updated {
		if err := servers.Put([]byte(k), v); err != nil {
			return fmt.Errorf("put server %q: %w", k, err)
		}
	}
	return nil
}

// backfillTransitions gives every stored tool (and server's instructions)
// the LastTransitionSeq and WithdrawnSeq its event log implies, so an
// approval signed against a v3 store's state, and the replay check, see
// the same seqs a v4 store would have kept. Records are edited as raw JSON
// objects so fields this migration does not know keep their exact bytes.
func backfillTransitions(tx kvTx) error {
	type seqs struct{ last, withdrawn uint64 }
	per := map[string]map[string]*seqs{} // server → tool ("" instructions)
	c := tx.Bucket(bucketEvents).Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		var tr Transition
		if err := json.Unmarshal(v, &tr); err != nil {
			return fmt.Errorf("decode event %x: %w", k, err)
		}
		ok, withdraws := moves(tr.Type, tr.Tool, tr.ApprovedDigest)
		if !ok {
			continue
		}
		tools := per[tr.Server]
		if tools == nil {
			tools = map[string]*seqs{}
			per[tr.Server] = tools
		}
		s := tools[tr.Tool]
		if s == nil {
			s = &seqs{}
			tools[tr.Tool] = s
		}
		s.last = tr.Seq
		if withdraws {
			s.withdrawn = tr.Seq
		}
	}
	return editRecords(tx, func(k []byte, rec map[string]json.RawMessage, recTools map[string]map[string]json.RawMessage) (bool, error) {
		tools := per[string(k)]
		if tools == nil {
			return false, nil
		}
		put := func(obj map[string]json.RawMessage, s *seqs, last, withdrawn string) {
			if s.last > 0 {
				obj[last] = json.RawMessage(strconv.FormatUint(s.last, 10))
			}
			if s.withdrawn > 0 {
				obj[withdrawn] = json.RawMessage(strconv.FormatUint(s.withdrawn, 10))
			}
		}
		if s := tools[""]; s != nil {
			put(rec, s, "InstructionsTransitionSeq", "InstructionsWithdrawnSeq")
		}
		for name, obj := range recTools {
			if s := tools[name]; s != nil {
				put(obj, s, "LastTransitionSeq", "WithdrawnSeq")
			}
		}
		return true, nil
	})
}

// SchemaVersion is the schema this binary writes and reads.
func SchemaVersion() uint64 { return latestVersion(migrations) }

func latestVersion(ms []migration) uint64 {
	if len(ms) == 0 {
		return 0
	}
	return ms[len(ms)-1].version
}

func createBuckets(tx kvTx, names ...[]byte) error {
	for _, n := range names {
		if _, err := tx.CreateBucketIfNotExists(n); err != nil {
			return fmt.Errorf("create bucket %q: %w", n, err)
		}
	}
	return nil
}

// schemaVersion reads meta "schema"; a file without a meta bucket is at 0.
func schemaVersion(tx kvTx) (uint64, error) {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return 0, nil
	}
	v := meta.Get(keySchema)
	if v == nil {
		return 0, nil
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("meta schema version is %d bytes, want 8", len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

func putSchemaVersion(tx kvTx, v uint64) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return fmt.Errorf("bucket %q missing", bucketMeta)
	}
	return meta.Put(keySchema, u64(v))
}

// checkVersion refuses files this binary cannot read and files that are not
// rugwatch stores at all.
func checkVersion(tx kvTx, cur uint64, ms []migration) error {
	latest := latestVersion(ms)
	if cur > latest {
		return fmt.Errorf("store schema is v%d but this rugwatch knows only up to v%d; upgrade rugwatch", cur, latest)
	}
	if cur == 0 {
		var foreign []byte
		_ = tx.ForEach(func(name []byte, _ kvBucket) error {
			foreign = name
			return nil
		})
		if foreign != nil {
			return fmt.Errorf("file has bucket %q but no rugwatch schema version; not a rugwatch store", foreign)
		}
	}
	return nil
}

// migrate applies every migration newer than the file's version, in order,
// in tx.
func migrate(tx kvTx, ms []migration) error {
	cur, err := schemaVersion(tx)
	if err != nil {
		return err
	}
	if err := checkVersion(tx, cur, ms); err != nil {
		return err
	}
	for _, m := range ms {
		if m.version <= cur {
			continue
		}
		if m.version != cur+1 {
			return fmt.Errorf("migration v%d (%s) follows v%d; migrations must be contiguous", m.version, m.name, cur)
		}
		if err := m.apply(tx); err != nil {
			return fmt.Errorf("migrate to v%d (%s): %w", m.version, m.name, err)
		}
		if err := putSchemaVersion(tx, m.version); err != nil {
			return fmt.Errorf("migrate to v%d (%s): record version: %w", m.version, m.name, err)
		}
		cur = m.version
	}
	return nil
}

// checkSchema is the read-only counterpart of migrate: the file must already
// be exactly at the latest version.
func checkSchema(tx kvTx, ms []migration) error {
	cur, err := schemaVersion(tx)
	if err != nil {
		return err
	}
	if err := checkVersion(tx, cur, ms); err != nil {
		return err
	}
	if latest := latestVersion(ms); cur < latest {
		if cur == 0 {
			return fmt.Errorf("store is not initialised (schema v0, need v%d); open it read-write once (rugwatch init)", latest)
		}
		return fmt.Errorf("store schema is v%d, this rugwatch needs v%d; open it read-write once to migrate (rugwatch check or serve)", cur, latest)
	}
	return nil
}

// u64 encodes v big endian so keys sort numerically.
func u64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}
