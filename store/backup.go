package store

import (
	"errors"
	"fmt"
	"io"

	bolt "go.etcd.io/bbolt"
)

// Backup writes a consistent copy of the whole file to w from one read
// transaction, so it runs beside the daemon's writers and never blocks
// them; size, if not nil, is told the copy's length before the first byte
// (a streaming caller sets Content-Length from it, so a copy cut short is
// an error at the other end, not a shorter file). The copy is a complete
// bbolt file at this binary's schema.
func (db *DB) Backup(w io.Writer, size func(int64)) (int64, error) {
	if db.bolt == nil {
		return 0, errors.New("copy store: a PostgreSQL store is backed up with the database's own tools (pg_dump), not by rugwatch")
	}
	var n int64
	err := db.bolt.View(func(tx *bolt.Tx) error {
		if size != nil {
			size(tx.Size())
		}
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	if err != nil {
		return n, fmt.Errorf("copy store %s: %w", db.path, err)
	}
	return n, nil
}
