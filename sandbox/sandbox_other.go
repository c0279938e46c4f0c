//go:build !linux

package sandbox

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"time"
)

// Cmd is a program to run under the start policy. Only Linux has the
// sandbox: here every start is refused as by the kernel, so auto runs the
// program unconfined (and says so) and strict refuses it.
type Cmd struct {
	Mode           Mode
	Spec           Spec
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	WaitDelay      time.Duration
	Process        *os.Process
	Sandboxed      bool
	Note           string
	cmd            *exec.Cmd
}

// Command prepares spec to run under mode.
func Command(mode Mode, spec Spec) *Cmd { return &Cmd{Mode: mode, Spec: spec} }

// StdinPipe is exec.Cmd's.
func (c *Cmd) StdinPipe() (io.WriteCloser, error) { return c.prepare().StdinPipe() }

// StdoutPipe is exec.Cmd's.
func (c *Cmd) StdoutPipe() (io.ReadCloser, error) { return c.prepare().StdoutPipe() }

func (c *Cmd) prepare() *exec.Cmd {
	if c.cmd == nil {
		c.cmd = exec.Command(c.Spec.Path)
		if len(c.Spec.Args) > 0 {
			c.cmd.Args = c.Spec.Args
		}
		c.cmd.Env, c.cmd.Dir = c.Spec.Env, c.Spec.Dir
	}
	return c.cmd
}

// Start refuses under strict and runs unconfined otherwise.
func (c *Cmd) Start() error {
	mode, err := ParseMode(string(c.Mode))
	if err != nil {
		return err
	}
	if mode == Strict {
		return &RefusedError{Step: "creating namespaces", Err: errors.ErrUnsupported}
	}
	c.Note = "NOT SANDBOXED: this system has no sandbox"
	cmd := c.prepare()
	if c.Stdin != nil {
		cmd.Stdin = c.Stdin
	}
	if c.Stdout != nil {
		cmd.Stdout = c.Stdout
	}
	if c.Stderr != nil {
		cmd.Stderr = c.Stderr
	}
	cmd.WaitDelay = c.WaitDelay
	if err := cmd.Start(); err != nil {
		return err
	}
	c.Process = cmd.Process
	return nil
}

// Wait is exec.Cmd's.
func (c *Cmd) Wait() error { return c.prepare().Wait() }

// Kill ends the program.
func (c *Cmd) Kill() {
	if c.Process != nil {
		_ = c.Process.Kill()
	}
}

// Init returns at once: there is no sandbox on this system.
func Init() {}

// HardenSelf does nothing here.
func HardenSelf() error { return nil }
