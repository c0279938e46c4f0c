package sandbox

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// HardenSelf makes the calling process non-dumpable: no core dump of it is
// written and no process of the same user without CAP_SYS_PTRACE can
// ptrace it or read its /proc/<pid>/environ, mem or maps. The daemon calls
// it once at start, before it reads any secret; it is inherited by threads
// and cleared again only by an exec.
func HardenSelf() error {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("making the process non-dumpable: %w", err)
	}
	return nil
}
