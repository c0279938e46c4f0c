package proxy

import (
	"errors"
	"os"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// pinProcess runs every thread of this process on cpu, and the Go
// scheduler on one processor, until restore. Affinity is a thread's, and
// a new thread inherits its creator's: setting each thread's pins the
// process.
func pinProcess(cpu int) (restore func() error, err error) {
	var old unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		return nil, err
	}
	var set unix.CPUSet
	set.Set(cpu)
	if err := setThreads(&set); err != nil {
		return nil, err
	}
	procs := runtime.GOMAXPROCS(1)
	return func() error {
		runtime.GOMAXPROCS(procs)
		return setThreads(&old)
	}, nil
}

// setThreads sets the affinity of every thread of this process, twice
// over: a thread created while the first pass ran may have inherited the
// old affinity from a creator not yet set.
func setThreads(set *unix.CPUSet) error {
	for range 2 {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return err
		}
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			if err := unix.SchedSetaffinity(tid, set); err != nil && !errors.Is(err, unix.ESRCH) {
				return err
			}
		}
	}
	return nil
}
