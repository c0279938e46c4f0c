package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// The conformance test below is differential: one long random sequence of
// operations runs on a bare bbolt file (the reference) and on the
// PostgreSQL backend, and everything either returns is compared: every
// key and value (nil, empty and missing told apart), every error (nil or
// not, and which bbolt sentinel), and after every transaction a dump of
// the whole test bucket tree, sequences included.
//
// One thing is not taken from bbolt as it is: a bbolt cursor is
// undefined after a write in its transaction (its own documentation:
// reposition after mutating). The reference cursor is repositioned
// (Seek to where it stood, then step) after any write, which is what
// the PostgreSQL cursor promises to do by itself ("a write through the
// same transaction makes it read again from where it stands"); the
// PostgreSQL cursor is never repositioned by the test.
//
// RUGWATCH_KV_SEEDS=1,2,3 picks the seeds, RUGWATCH_KV_OPS the
// operations per seed; RUGWATCH_KV_STRICT=1 also draws the operations
// the PostgreSQL backend is known to get wrong (kvKnownDivergent).

const kvTestBucket = "kvtest"

// kvKnownDivergent lists the operation shapes on which the PostgreSQL
// backend is known to differ from bbolt (see TestKVKnownDivergences).
// Unless RUGWATCH_KV_STRICT is set the generator does not draw them, so
// the random test keeps checking everything else.
var kvKnownDivergent = map[string]bool{
	// Buckets named like keys: a Put over a nested bucket's key fails
	// the commit on PostgreSQL (its writes wait for the commit), not the
	// Put; CreateBucket over a value is refused on both.
	"nameCollision": true,
	// Delete (Bucket.Delete, Cursor.Delete) of a nested bucket's key.
	"deleteBucketKey": true,
	// Put(k, nil): bbolt reads nil back until the commit.
	"putNil": true,
}

func kvAvoid(what string) bool { return !kvStrict() && !kvForce && kvKnownDivergent[what] }

// kvForce makes the generator and the walker draw everything, for
// TestKVKnownDivergences (tests in this package do not run in parallel).
var kvForce bool

func kvStrict() bool { return os.Getenv("RUGWATCH_KV_STRICT") != "" }

// kvOp is one operation of a script, run the same on both backends.
type kvOp struct {
	kind string
	path []string // bucket path under kvTestBucket
	key  []byte
	val  []byte
	n    int
	seq  uint64
	acts []kvAct // cursor walk
}

type kvAct struct {
	kind string
	key  []byte
	val  []byte
}

func (o kvOp) String() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s /%s", o.kind, strings.Join(kvHexPath(o.path), "/"))
	if o.key != nil {
		fmt.Fprintf(&sb, " key=%x", o.key)
	}
	switch o.kind {
	case "put", "viewPut", "bulkPut":
		fmt.Fprintf(&sb, " val=%s", kvFmt(o.val))
	}
	if o.n != 0 {
		fmt.Fprintf(&sb, " n=%d", o.n)
	}
	if o.kind == "setSeq" {
		fmt.Fprintf(&sb, " seq=%d", o.seq)
	}
	for _, a := range o.acts {
		fmt.Fprintf(&sb, " [%s", a.kind)
		if a.key != nil {
			fmt.Fprintf(&sb, " %x", a.key)
		}
		if a.kind == "put" {
			fmt.Fprintf(&sb, "=%s", kvFmt(a.val))
		}
		sb.WriteString("]")
	}
	return sb.String()
}

func kvHexPath(p []string) []string {
	out := make([]string, len(p))
	for i, s := range p {
		out[i] = fmt.Sprintf("%x", s)
	}
	return out
}

// kvFmt shows a value, telling nil from empty; big values by length and
// digest.
func kvFmt(v []byte) string {
	switch {
	case v == nil:
		return "nil"
	case len(v) == 0:
		return "empty"
	case len(v) > 24:
		return fmt.Sprintf("len%d:%x", len(v), sha256.Sum256(v))[:24]
	}
	return fmt.Sprintf("%x", v)
}

// kvErr classes an error: nil, the bbolt sentinel it is, or "error".
func kvErr(err error) string {
	if err == nil {
		return "nil"
	}
	for _, s := range []error{
		bolterrors.ErrBucketExists, bolterrors.ErrBucketNotFound, bolterrors.ErrBucketNameRequired,
		bolterrors.ErrIncompatibleValue, bolterrors.ErrKeyRequired, bolterrors.ErrKeyTooLarge,
		bolterrors.ErrValueTooLarge, bolterrors.ErrTxNotWritable, bolterrors.ErrTxClosed,
	} {
		if errors.Is(err, s) {
			return "bolt:" + s.Error()
		}
	}
	return "error"
}

// kvGen draws the scripts.
type kvGen struct{ r *rand.Rand }

var kvAlphabet = []byte{0x00, 'a', 'b', 0xff}

func (g kvGen) key() []byte {
	n := 1
	switch x := g.r.IntN(100); {
	case x < 40:
	case x < 70:
		n = 2
	case x < 85:
		n = 3
	default:
		n = 4 + g.r.IntN(5)
	}
	k := make([]byte, n)
	for i := range k {
		k[i] = kvAlphabet[g.r.IntN(len(kvAlphabet))]
	}
	return k
}

func (g kvGen) val() []byte {
	switch x := g.r.IntN(100); {
	case x < 8:
		if kvAvoid("putNil") {
			return []byte{}
		}
		return nil
	case x < 20:
		return []byte{}
	case x < 80:
		return g.bytes(1 + g.r.IntN(8))
	case x < 97:
		return g.bytes(100 + g.r.IntN(2000))
	default:
		return g.bytes(5000 + g.r.IntN(20000))
	}
}

func (g kvGen) bytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(g.r.Uint32())
	}
	return b
}

// kvNames are the nested buckets' names: two of them are also keys a Put
// draws, so values and buckets collide.
var kvNames = []string{"B1", "B2", "a", "b"}

func (g kvGen) name() string {
	if kvAvoid("nameCollision") {
		return kvNames[g.r.IntN(2)]
	}
	return kvNames[g.r.IntN(len(kvNames))]
}

func (g kvGen) path() []string {
	switch x := g.r.IntN(100); {
	case x < 50:
		return nil
	case x < 85:
		return []string{g.name()}
	default:
		return []string{g.name(), g.name()}
	}
}

func (g kvGen) seqVal() uint64 {
	switch g.r.IntN(5) {
	case 0:
		return 0
	case 1:
		return math.MaxUint64 - uint64(g.r.IntN(3))
	case 2:
		return 1<<63 - 1 + uint64(g.r.IntN(3))
	}
	return uint64(g.r.IntN(1000))
}

func (g kvGen) pick(w map[string]int) string {
	total := 0
	for _, k := range kvSortedKeys(w) {
		total += w[k]
	}
	x := g.r.IntN(total)
	for _, k := range kvSortedKeys(w) {
		if x < w[k] {
			return k
		}
		x -= w[k]
	}
	panic("unreachable")
}

func kvSortedKeys(w map[string]int) []string {
	keys := make([]string, 0, len(w))
	for k := range w {
		keys = append(keys, k)
	}
	// Insertion sort: tiny maps, and map order must not leak into the
	// seeded draw.
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}

var (
	kvWriteOps = map[string]int{
		"put": 26, "delete": 7, "deleteNth": 4, "get": 12, "createIfNotExists": 4, "create": 2,
		"hasBucket": 2, "seq": 2, "setSeq": 2, "nextSeq": 3, "walk": 12, "forEach": 3,
		"forEachBucket": 2, "forEachStop": 1, "bulkPut": 1, "bulkDelete": 1,
	}
	kvReadOps = map[string]int{
		"get": 12, "hasBucket": 2, "seq": 2, "walk": 10, "forEach": 3, "forEachBucket": 2,
		"forEachStop": 1, "viewPut": 1, "viewDelete": 1, "viewCreate": 1, "viewNextSeq": 1,
	}
)

func (g kvGen) op(write bool) kvOp {
	ops := kvReadOps
	if write {
		ops = kvWriteOps
	}
	for {
		o := kvOp{kind: g.pick(ops), path: g.path()}
		switch o.kind {
		case "put", "viewPut":
			o.key, o.val = g.key(), g.val()
			if g.r.IntN(20) == 0 {
				o.key = []byte{} // ErrKeyRequired
			}
		case "delete", "get", "viewDelete":
			o.key = g.key()
		case "deleteNth":
			o.n = g.r.IntN(40)
		case "createIfNotExists", "create", "hasBucket", "viewCreate":
			o.key = []byte(g.name())
			if g.r.IntN(30) == 0 {
				o.key = []byte{} // ErrBucketNameRequired
			}
		case "setSeq":
			o.seq = g.seqVal()
		case "forEachStop":
			o.n = g.r.IntN(6)
		case "bulkPut":
			o.key = []byte{kvAlphabet[g.r.IntN(len(kvAlphabet))]}
			o.n = 50 + g.r.IntN(300)
			o.val = g.val()
		case "bulkDelete":
			o.key = []byte{kvAlphabet[g.r.IntN(len(kvAlphabet))]}
		case "walk":
			o.acts = g.walk(write)
		}
		if kvAvoid(o.kind) {
			continue
		}
		return o
	}
}

func (g kvGen) walk(write bool) []kvAct {
	n := 1 + g.r.IntN(14)
	acts := make([]kvAct, 0, n)
	for range n {
		var a kvAct
		switch x := g.r.IntN(100); {
		case x < 8:
			a.kind = "first"
		case x < 14:
			a.kind = "last"
		case x < 22:
			a.kind = "seek"
			a.key = g.key()
			if g.r.IntN(10) == 0 {
				a.key = []byte{}
			}
		case x < 46:
			a.kind = "next"
		case x < 62:
			a.kind = "prev"
		case x < 66:
			a.kind = "nextAll"
		case x < 69:
			a.kind = "prevAll"
		case !write:
			a.kind = "next"
		case x < 82:
			a.kind = "cdel"
		case x < 94:
			a.kind = "put"
			a.key, a.val = g.key(), g.val()
		default:
			a.kind = "del"
			a.key = g.key()
		}
		if kvAvoid("walk:" + a.kind) {
			continue
		}
		acts = append(acts, a)
	}
	return acts
}

// kvExec runs a script's operations in one transaction of one backend.
type kvExec struct {
	tx kvTx
	// ref repositions cursors after writes (the bbolt side).
	ref bool
	// gen moves on every write the script makes.
	gen int
	// rows is the reference's forward read of bucket rowsOf at rowsGen.
	rows    []pgRow
	rowsOf  kvBucket
	rowsGen int
}

func (x *kvExec) bucket(path []string) kvBucket {
	b := x.tx.Bucket([]byte(kvTestBucket))
	for _, p := range path {
		if b == nil {
			return nil
		}
		b = b.Bucket([]byte(p))
	}
	return b
}

// run runs o and says what it saw, in a string that owns its bytes.
func (x *kvExec) run(o kvOp) string {
	b := x.bucket(o.path)
	if b == nil {
		return "nobucket"
	}
	switch o.kind {
	case "put", "viewPut":
		x.gen++
		return kvErr(b.Put(o.key, o.val))
	case "delete", "viewDelete":
		x.gen++
		return kvErr(b.Delete(o.key))
	case "get":
		return kvFmt(b.Get(o.key))
	case "deleteNth":
		var keys [][]byte
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if v != nil || !kvAvoid("deleteBucketKey") {
				keys = append(keys, bytes.Clone(k))
			}
		}
		if len(keys) == 0 {
			return "empty bucket"
		}
		k := keys[o.n%len(keys)]
		x.gen++
		return fmt.Sprintf("%x %s", k, kvErr(b.Delete(k)))
	case "createIfNotExists", "viewCreate":
		x.gen++
		nb, err := b.CreateBucketIfNotExists(o.key)
		return fmt.Sprintf("%s bucket=%t", kvErr(err), nb != nil)
	case "create":
		x.gen++
		nb, err := b.CreateBucket(o.key)
		return fmt.Sprintf("%s bucket=%t", kvErr(err), nb != nil)
	case "hasBucket":
		return fmt.Sprint(b.Bucket(o.key) != nil)
	case "seq":
		return fmt.Sprint(b.Sequence())
	case "setSeq":
		x.gen++
		err := b.SetSequence(o.seq)
		return fmt.Sprintf("%s %d", kvErr(err), b.Sequence())
	case "nextSeq", "viewNextSeq":
		x.gen++
		s, err := b.NextSequence()
		return fmt.Sprintf("%d %s %d", s, kvErr(err), b.Sequence())
	case "forEach":
		var sb strings.Builder
		err := b.ForEach(func(k, v []byte) error {
			fmt.Fprintf(&sb, "%x=%s ", k, kvFmt(v))
			return nil
		})
		return sb.String() + kvErr(err)
	case "forEachBucket":
		var sb strings.Builder
		err := b.ForEachBucket(func(k []byte) error {
			fmt.Fprintf(&sb, "%x ", k)
			return nil
		})
		return sb.String() + kvErr(err)
	case "forEachStop":
		var sb strings.Builder
		i := 0
		stop := errors.New("stop")
		err := b.ForEach(func(k, v []byte) error {
			if i == o.n {
				return stop
			}
			i++
			fmt.Fprintf(&sb, "%x=%s ", k, kvFmt(v))
			return nil
		})
		if !errors.Is(err, stop) {
			sb.WriteString(kvErr(err))
		} else {
			sb.WriteString("stopped")
		}
		return sb.String()
	case "bulkPut":
		var errs []string
		for i := range o.n {
			k := append(bytes.Clone(o.key), byte(i>>8), byte(i))
			if err := b.Put(k, o.val); err != nil {
				errs = append(errs, fmt.Sprintf("%x:%s", k, kvErr(err)))
			}
		}
		x.gen++
		return fmt.Sprint(errs)
	case "bulkDelete":
		var keys [][]byte
		c := b.Cursor()
		for k, _ := c.Seek(o.key); k != nil && bytes.HasPrefix(k, o.key); k, _ = c.Next() {
			keys = append(keys, bytes.Clone(k))
		}
		var errs []string
		for _, k := range keys {
			if err := b.Delete(k); err != nil {
				errs = append(errs, fmt.Sprintf("%x:%s", k, kvErr(err)))
			}
		}
		x.gen++
		return fmt.Sprint(len(keys), errs)
	case "walk":
		return x.walk(b, o.acts)
	}
	panic("unknown op " + o.kind)
}

// kvWalker is a cursor as the test drives it: on the reference side it
// is repositioned after any write.
type kvWalker struct {
	x       *kvExec
	b       kvBucket
	c       kvCursor
	cur     []byte // where it stands; nil: nowhere (fresh or off an end)
	gen     int    // x.gen when c was positioned
	deleted bool   // cur was deleted through the cursor
	bucket  bool   // cur is a nested bucket's key
}

func (w *kvWalker) at(k, v []byte) string {
	w.cur, w.gen, w.deleted, w.bucket = bytes.Clone(k), w.x.gen, false, k != nil && v == nil
	if k == nil {
		return "end"
	}
	return fmt.Sprintf("%x=%s", k, kvFmt(v))
}

func (w *kvWalker) stale() bool { return w.x.ref && w.gen != w.x.gen }

func (w *kvWalker) next() string {
	if w.cur == nil {
		return "(first)" + w.at(w.c.First())
	}
	if w.stale() {
		w.c = w.b.Cursor()
		k, v := w.c.Seek(w.cur)
		if k != nil && bytes.Equal(k, w.cur) {
			k, v = w.c.Next()
		}
		return w.at(k, v)
	}
	return w.at(w.c.Next())
}

func (w *kvWalker) prev() string {
	if w.cur == nil {
		return "(last)" + w.last()
	}
	if w.x.ref {
		// bbolt's Prev is not to be trusted in a write transaction:
		// with a leaf emptied by deletes before it, it returns nil
		// early (prev and last do not skip empty leaves, next does).
		// The reference walks forward instead.
		i := w.refIndex(w.cur)
		if i == 0 {
			return w.at(nil, nil)
		}
		r := w.x.rows[i-1]
		w.c = w.b.Cursor()
		w.c.Seek(r.k) // where the reference cursor stands, for cdel
		return w.at(r.k, r.v)
	}
	return w.at(w.c.Prev())
}

func (w *kvWalker) last() string {
	if w.x.ref {
		n := w.refIndex(nil)
		if n == 0 {
			return w.at(nil, nil)
		}
		r := w.x.rows[n-1]
		w.c = w.b.Cursor()
		w.c.Seek(r.k)
		return w.at(r.k, r.v)
	}
	return w.at(w.c.Last())
}

// refIndex is how many of the bucket's keys sort before key (all of
// them for nil), read forward with a fresh cursor.
func (w *kvWalker) refIndex(key []byte) int {
	if w.x.rowsGen != w.x.gen || w.x.rowsOf != w.b || w.x.rows == nil {
		w.x.rows = []pgRow{}
		c := w.b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			var vc []byte
			if v != nil {
				vc = append([]byte{}, v...)
			}
			w.x.rows = append(w.x.rows, pgRow{k: bytes.Clone(k), v: vc})
		}
		w.x.rowsGen, w.x.rowsOf = w.x.gen, w.b
	}
	if key == nil {
		return len(w.x.rows)
	}
	i := 0
	for i < len(w.x.rows) && bytes.Compare(w.x.rows[i].k, key) < 0 {
		i++
	}
	return i
}

func (w *kvWalker) del() string {
	if w.cur == nil || w.deleted || w.bucket && kvAvoid("deleteBucketKey") {
		return "skip"
	}
	if w.stale() {
		w.c = w.b.Cursor()
		k, _ := w.c.Seek(w.cur)
		if k == nil || !bytes.Equal(k, w.cur) {
			// Gone already: nothing under the cursor to delete.
			w.x.gen++
			w.deleted = true
			return "nil"
		}
	}
	err := w.c.Delete()
	w.x.gen++
	if err == nil {
		w.deleted = true
	} else {
		// Failed (a bucket): the reference cursor still stands there.
		w.gen = w.x.gen
	}
	return kvErr(err)
}

func (x *kvExec) walk(b kvBucket, acts []kvAct) string {
	w := &kvWalker{x: x, b: b, c: b.Cursor()}
	var out []string
	for _, a := range acts {
		var s string
		switch a.kind {
		case "first":
			s = w.at(w.c.First())
		case "last":
			s = w.last()
		case "seek":
			s = w.at(w.c.Seek(a.key))
		case "next":
			s = w.next()
		case "prev":
			s = w.prev()
		case "nextAll", "prevAll":
			var sb strings.Builder
			for i := 0; i < 2000; i++ {
				var r string
				if a.kind == "nextAll" {
					r = w.next()
				} else {
					r = w.prev()
				}
				sb.WriteString(r + " ")
				if w.cur == nil {
					break
				}
			}
			s = sb.String()
		case "cdel":
			s = w.del()
		case "put":
			x.gen++
			s = kvErr(b.Put(a.key, a.val))
		case "del":
			x.gen++
			s = kvErr(b.Delete(a.key))
		}
		out = append(out, a.kind+":"+s)
	}
	return strings.Join(out, " | ")
}

// kvDump lists the test bucket tree: every key, value, nested bucket and
// sequence.
func kvDump(t *testing.T, db kvDB) string {
	t.Helper()
	var sb strings.Builder
	err := db.view(func(tx kvTx) error {
		b := tx.Bucket([]byte(kvTestBucket))
		if b == nil {
			return errors.New("no test bucket")
		}
		kvDumpBucket(b, "", &sb)
		return nil
	})
	if err != nil {
		t.Fatalf("dump: %v", err)
	}
	return sb.String()
}

func kvDumpBucket(b kvBucket, path string, sb *strings.Builder) {
	fmt.Fprintf(sb, "%s/ seq=%d\n", path, b.Sequence())
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if v != nil {
			fmt.Fprintf(sb, "%s/%x = %s\n", path, k, kvFmt(v))
			continue
		}
		nb := b.Bucket(k)
		if nb == nil {
			fmt.Fprintf(sb, "%s/%x = nil, but no bucket\n", path, k)
			continue
		}
		kvDumpBucket(nb, fmt.Sprintf("%s/%x", path, k), sb)
	}
}

// kvFirstDiff shows where two dumps part.
func kvFirstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < len(al) || i < len(bl); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			return fmt.Sprintf("line %d:\n  bbolt:      %q\n  postgresql: %q", i+1, x, y)
		}
	}
	return "(same)"
}

// kvBackends opens a bare bbolt file and a PostgreSQL store, each with an
// empty test bucket.
func kvBackends(t *testing.T) (ref, pg kvDB) {
	t.Helper()
	bdb, err := bolt.Open(filepath.Join(t.TempDir(), "kv.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bdb.Close() })
	ref = boltDB{bdb}
	pg = openPostgres(t, Options{}).kv
	for _, db := range []kvDB{ref, pg} {
		if err := db.update(func(tx kvTx) error {
			_, err := tx.CreateBucket([]byte(kvTestBucket))
			return err
		}); err != nil {
			t.Fatalf("create test bucket: %v", err)
		}
	}
	return ref, pg
}

// kvRun runs script in one transaction of db (update or view), the
// update failing at the end when fail is set.
func kvRun(db kvDB, write, fail, ref bool, script []kvOp) ([]string, error) {
	var seen []string
	fn := func(tx kvTx) error {
		x := &kvExec{tx: tx, ref: ref}
		for _, o := range script {
			seen = append(seen, x.run(o))
		}
		if fail {
			return errors.New("script fails")
		}
		return nil
	}
	if write {
		return seen, db.update(fn)
	}
	return seen, db.view(fn)
}

func kvSeeds(t *testing.T) ([]uint64, int) {
	// A new seed each run and a fixed one, kept short for the race
	// detector's CI pass; RUGWATCH_KV_SEEDS and _OPS run more.
	seeds := []uint64{uint64(time.Now().UnixNano()), 1}
	ops := 1200
	if s := os.Getenv("RUGWATCH_KV_SEEDS"); s != "" {
		seeds = nil
		for _, f := range strings.Split(s, ",") {
			var v uint64
			if _, err := fmt.Sscan(f, &v); err != nil {
				t.Fatalf("RUGWATCH_KV_SEEDS: %v", err)
			}
			seeds = append(seeds, v)
		}
	}
	if s := os.Getenv("RUGWATCH_KV_OPS"); s != "" {
		if _, err := fmt.Sscan(s, &ops); err != nil {
			t.Fatalf("RUGWATCH_KV_OPS: %v", err)
		}
	}
	return seeds, ops
}

// TestKVConformance runs the same random operations on bbolt and on
// PostgreSQL and compares all they return.
func TestKVConformance(t *testing.T) {
	seeds, ops := kvSeeds(t)
	for _, seed := range seeds {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			t.Logf("seed %d (rerun: RUGWATCH_KV_SEEDS=%d go test -run 'KVConformance$' ./store)", seed, seed)
			kvConformance(t, seed, ops)
		})
	}
}

func kvConformance(t *testing.T, seed uint64, ops int) {
	ref, pg := kvBackends(t)
	g := kvGen{rand.New(rand.NewPCG(seed, 0x6b76))}
	before := kvDump(t, ref)
	done, txs, batches := 0, 0, 0
	nextBatch := 300
	for done < ops {
		if done >= nextBatch {
			nextBatch += 300
			batches++
			kvBatchRound(t, g, ref, pg, batches)
			before = kvDump(t, ref)
		}
		txs++
		write := g.r.IntN(100) < 75
		fail := write && g.r.IntN(100) < 15
		script := make([]kvOp, 1+g.r.IntN(30))
		for i := range script {
			script[i] = g.op(write)
		}
		done += len(script)
		refSeen, refErr := kvRun(ref, write, fail, true, script)
		pgSeen, pgErr := kvRun(pg, write, fail, false, script)
		what := "view"
		if write {
			what = "update"
			if fail {
				what = "update (returns an error)"
			}
		}
		for i := range script {
			if i >= len(pgSeen) || refSeen[i] != pgSeen[i] {
				var sb strings.Builder
				for j := 0; j <= i; j++ {
					fmt.Fprintf(&sb, "\n  %2d %s", j, script[j])
				}
				var got string
				if i < len(pgSeen) {
					got = pgSeen[i]
				}
				t.Fatalf("seed %d, transaction %d (%s), operation %d differs:%s\n bbolt:      %s\n postgresql: %s",
					seed, txs, what, i, sb.String(), refSeen[i], got)
			}
		}
		if (refErr == nil) != (pgErr == nil) || (refErr != nil) != fail {
			t.Fatalf("seed %d, transaction %d (%s): bbolt returned %v, PostgreSQL %v\n%s",
				seed, txs, what, refErr, pgErr, kvScript(script))
		}
		refDump, pgDump := kvDump(t, ref), kvDump(t, pg)
		if refDump != pgDump {
			t.Fatalf("seed %d, transaction %d (%s): trees differ after it, %s\n%s",
				seed, txs, what, kvFirstDiff(refDump, pgDump), kvScript(script))
		}
		if (fail || !write) && refDump != before {
			t.Fatalf("seed %d, transaction %d (%s) changed the bbolt tree", seed, txs, what)
		}
		before = refDump
	}
	t.Logf("seed %d: %d operations in %d transactions, %d batch rounds; final tree %d lines",
		seed, done, txs, batches, strings.Count(before, "\n"))
}

func kvScript(script []kvOp) string {
	var sb strings.Builder
	for j, o := range script {
		fmt.Fprintf(&sb, "  %2d %s\n", j, o)
	}
	return sb.String()
}

// kvBatchRound makes several concurrent batch calls on each backend, one
// of them failing: the others must commit, the failing one not.
func kvBatchRound(t *testing.T, g kvGen, ref, pg kvDB, round int) {
	t.Helper()
	n := 3 + g.r.IntN(4)
	failing := g.r.IntN(n)
	val := g.val()
	run := func(db kvDB) []error {
		errs := make([]error, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				errs[i] = db.batch(func(tx kvTx) error {
					b := tx.Bucket([]byte(kvTestBucket))
					for j := range 3 {
						if err := b.Put([]byte(fmt.Sprintf("batch%d-%d-%d", round, i, j)), val); err != nil {
							return err
						}
					}
					// A counter every call moves: calls that commit
					// together see each other's writes.
					var c uint64
					if v := b.Get([]byte("batchcount")); len(v) == 8 {
						for _, x := range v {
							c = c<<8 | uint64(x)
						}
					}
					c++
					cb := make([]byte, 8)
					for k := range cb {
						cb[k] = byte(c >> (56 - 8*k))
					}
					if err := b.Put([]byte("batchcount"), cb); err != nil {
						return err
					}
					if i == failing {
						return errors.New("this batch call fails")
					}
					return nil
				})
			}()
		}
		close(start)
		wg.Wait()
		return errs
	}
	refErrs, pgErrs := run(ref), run(pg)
	for i := range n {
		if (refErrs[i] == nil) != (pgErrs[i] == nil) || (refErrs[i] != nil) != (i == failing) {
			t.Fatalf("batch round %d, call %d of %d (failing: %d): bbolt returned %v, PostgreSQL %v",
				round, i, n, failing, refErrs[i], pgErrs[i])
		}
	}
	if a, b := kvDump(t, ref), kvDump(t, pg); a != b {
		t.Fatalf("batch round %d: trees differ, %s", round, kvFirstDiff(a, b))
	}
}

// TestKVConformancePanic: a function that panics in an update is rolled
// back, and the next writer is not held up by it. (PostgreSQL leaked the
// transaction, its connection and the writer lock of every replica, and
// the store's Close then hung, until rollbackOnPanic.)
func TestKVConformancePanic(t *testing.T) {
	ref, pg := kvBackends(t)
	for _, side := range []struct {
		name string
		db   kvDB
	}{{"bbolt", ref}, {"postgresql", pg}} {
		func() {
			defer func() { _ = recover() }()
			_ = side.db.update(func(tx kvTx) error {
				_ = tx.Bucket([]byte(kvTestBucket)).Put([]byte("k"), []byte("v"))
				panic("boom")
			})
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := side.db.updateContext(ctx, func(tx kvTx) error {
			return tx.Bucket([]byte(kvTestBucket)).Put([]byte("k2"), []byte("v"))
		})
		cancel()
		if err != nil {
			t.Errorf("%s: the update after a panicking one: %v", side.name, err)
		}
	}
	if a, b := kvDump(t, ref), kvDump(t, pg); a != b {
		t.Errorf("trees differ, %s", kvFirstDiff(a, b))
	}
}

// TestKVKnownDivergences runs, on both backends, the smallest scripts
// found on which the PostgreSQL backend differs from bbolt. Each
// subtest that still differs is skipped, with what differs, unless
// RUGWATCH_KV_STRICT is set; one that agrees passes (the divergence is
// fixed: take it out of kvKnownDivergent).
func TestKVKnownDivergences(t *testing.T) {
	put := func(k, v string) kvOp { return kvOp{kind: "put", key: []byte(k), val: []byte(v)} }
	cases := []struct {
		name  string
		setup []kvOp // committed first
		tx    []kvOp
	}{
		{"PutOnCommittedBucketKey",
			[]kvOp{{kind: "create", key: []byte("x")}},
			[]kvOp{put("x", "v"), {kind: "get", key: []byte("x")}}},
		{"DeleteBucketKey",
			[]kvOp{{kind: "create", key: []byte("x")}},
			[]kvOp{{kind: "delete", key: []byte("x")}}},
		{"CursorDeleteBucketKey",
			[]kvOp{{kind: "create", key: []byte("x")}},
			[]kvOp{{kind: "walk", acts: []kvAct{{kind: "first"}, {kind: "cdel"}}}}},
		{"CreateBucketOnPendingValue",
			nil,
			[]kvOp{put("a", "v"), {kind: "create", key: []byte("a")}}},
		{"CreateBucketOnCommittedValue",
			[]kvOp{put("a", "v")},
			[]kvOp{{kind: "create", key: []byte("a")}, put("b", "w"), {kind: "get", key: []byte("b")}}},
		{"CreateBucketAfterDeletingValue",
			[]kvOp{put("a", "v")},
			[]kvOp{{kind: "delete", key: []byte("a")}, {kind: "create", key: []byte("a")}}},
		{"PutNilThenGet",
			nil,
			[]kvOp{{kind: "put", key: []byte("a")}, {kind: "get", key: []byte("a")}}},
	}
	ref, pg := kvBackends(t)
	kvForce = true
	defer func() { kvForce = false }()
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// Each case in its own bucket under the test bucket.
			root := fmt.Sprintf("case%d", i)
			for _, db := range []kvDB{ref, pg} {
				if err := db.update(func(tx kvTx) error {
					_, err := tx.Bucket([]byte(kvTestBucket)).CreateBucket([]byte(root))
					return err
				}); err != nil {
					t.Fatal(err)
				}
			}
			withRoot := func(ops []kvOp) []kvOp {
				out := make([]kvOp, len(ops))
				for j, o := range ops {
					o.path = append([]string{root}, o.path...)
					out[j] = o
				}
				return out
			}
			var diffs []string
			for _, step := range [][]kvOp{withRoot(c.setup), withRoot(c.tx)} {
				if len(step) == 0 {
					continue
				}
				a, aerr := kvRun(ref, true, false, true, step)
				b, berr := kvRun(pg, true, false, false, step)
				for j := range a {
					if a[j] != b[j] {
						diffs = append(diffs, fmt.Sprintf("%s: bbolt %s, postgresql %s", step[j], a[j], b[j]))
					}
				}
				if (aerr == nil) != (berr == nil) {
					diffs = append(diffs, fmt.Sprintf("commit: bbolt %v, postgresql %v", aerr, berr))
				}
			}
			sub := func(dump string) string {
				var keep []string
				for _, l := range strings.Split(dump, "\n") {
					if strings.HasPrefix(l, fmt.Sprintf("/%x/", root)) {
						keep = append(keep, l)
					}
				}
				return strings.Join(keep, "\n")
			}
			if a, b := sub(kvDump(t, ref)), sub(kvDump(t, pg)); a != b {
				diffs = append(diffs, "trees differ after it, "+kvFirstDiff(a, b))
			}
			if len(diffs) == 0 {
				return
			}
			msg := "known divergence:\n  " + strings.Join(diffs, "\n  ")
			if kvStrict() {
				t.Error(msg)
				return
			}
			t.Skip(msg)
		})
	}
}
