//go:build !linux

package sandbox

import (
	"errors"
	"os/exec"
)

// Cmd is a server prepared to run in a sandbox; only Linux has one.
type Cmd struct {
	*exec.Cmd
}

// Command always fails here: the sandbox needs Linux namespaces.
func Command(Spec) (*Cmd, error) {
	return nil, &UnavailableError{Step: "creating namespaces", Err: errors.ErrUnsupported}
}

// Start is never reached: Command fails.
func (c *Cmd) Start() error {
	return &UnavailableError{Step: "creating namespaces", Err: errors.ErrUnsupported}
}

// Init returns at once: there is no sandbox init on this system.
func Init() {}

// HardenSelf does nothing here.
func HardenSelf() error { return nil }
