//go:build !linux

package store

// ReleaseMapped is a no-op where the kernel is not asked to drop mapped
// pages (see mapped_linux.go).
func (db *DB) ReleaseMapped() error { return nil }

// ReleaseMapped is a no-op here too, but for an ended transaction.
func (t *Tx) ReleaseMapped() error {
	if t.tx.ended() {
		return ErrTxClosed
	}
	return nil
}
