package store

import (
	"fmt"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// ReleaseMapped tells the kernel this process is done with the pages of
// the file it read through bbolt's mmap. They stay in the page cache and
// fault back in, unchanged, on the next read (the mapping is shared and
// read-only; bbolt writes with pwrite), but they no longer count as this
// process's resident memory: a check that reads every record of a 10,000
// server store would otherwise hold the whole file resident (RssFile) to
// the end. It runs inside a read transaction, which holds bbolt's mmap
// lock, so the mapping cannot move while the range is given up.
func (db *DB) ReleaseMapped() error {
	if db.bolt == nil {
		return nil // PostgreSQL: nothing of the database is mapped here
	}
	return db.bolt.View(func(tx *bolt.Tx) error { return release(db, tx) })
}

// ReleaseMapped is DB.ReleaseMapped inside a transaction that reads a
// long run of scattered records: each read fault maps the pages around
// it too (the kernel's fault-around, 64 KiB), so 10,000 small reads can
// make most of a large file resident before the transaction ends. (A
// second read transaction opened inside this one could wait forever on a
// writer queued for the mmap lock.)
func (t *Tx) ReleaseMapped() error {
	if t.tx.ended() {
		return ErrTxClosed // bbolt's Size would read the ended tx's nil meta
	}
	btx, ok := t.tx.(boltTx)
	if !ok {
		return nil
	}
	return release(t.db, btx.tx)
}

func release(db *DB, tx *bolt.Tx) error {
	info := db.bolt.Info()
	if _, _, errno := unix.Syscall(unix.SYS_MADVISE, info.Data, uintptr(tx.Size()), unix.MADV_DONTNEED); errno != 0 {
		return fmt.Errorf("releasing mapped store pages: %w", errno)
	}
	return nil
}
