package testkit

import (
	"errors"
	"syscall"
	"testing"
	"time"
)

// sysPidfdOpen is pidfd_open(2), the same number on every Linux
// architecture (Linux 5.3 and later); package syscall does not name it.
const sysPidfdOpen = 434

// WaitGone waits until process pid has exited (a zombie counts as gone:
// it runs nothing) and fails the test if it still runs after timeout. It
// waits on a pidfd, which becomes readable the moment the process exits,
// so it works for processes that are not the test's children (a
// reparented grandchild) without looking at /proc in a loop. The bound
// only keeps a process that was never killed from hanging the run.
func WaitGone(t testing.TB, pid int, timeout time.Duration) {
	t.Helper()
	fd, _, errno := syscall.Syscall(sysPidfdOpen, uintptr(pid), 0, 0)
	if errno == syscall.ESRCH {
		return // exited and reaped already
	}
	if errno != 0 {
		t.Fatalf("pidfd_open(%d): %v", pid, errno)
	}
	defer syscall.Close(int(fd))
	deadline := time.Now().Add(timeout)
	for {
		var readable syscall.FdSet
		readable.Bits[fd/64] |= 1 << (fd % 64)
		tv := syscall.NsecToTimeval(max(time.Until(deadline), 0).Nanoseconds())
		n, err := syscall.Select(int(fd)+1, &readable, nil, nil, &tv)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			t.Fatalf("wait for pid %d: %v", pid, err)
		}
		if n == 0 {
			t.Fatalf("pid %d still running %v after it should have been killed", pid, timeout)
		}
		return
	}
}
