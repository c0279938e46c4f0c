//go:build !linux

package proxy

import "errors"

// pinProcess is Linux's (bench_linux_test.go); elsewhere the pinned
// benchmark is skipped.
func pinProcess(int) (func() error, error) {
	return nil, errors.New("pinning to a CPU is implemented on Linux only")
}
