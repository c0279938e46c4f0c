package sandbox

import (
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// loopbackUp brings up the network namespace's own loopback, the only
// interface it has.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("reading lo's flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP | unix.IFF_RUNNING)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bringing lo up: %w", err)
	}
	return nil
}

// forwardEgress listens on the sandbox's own loopback and hands every
// accepted connection, as a descriptor, to the daemon over ctrl, where the
// Egress decides what it may reach. The connection itself stays in this
// network namespace; only the daemon's side dials out. It returns the port.
func forwardEgress(ctrl *os.File) (int, error) {
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return 0, err
	}
	go func() {
		// Ends with the init: the daemon's side closing makes the send
		// fail, and the init's exit ends the listener.
		defer ln.Close()
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			f, err := c.File()
			c.Close()
			if err != nil {
				continue
			}
			err = unix.Sendmsg(int(ctrl.Fd()), []byte{0}, unix.UnixRights(int(f.Fd())), nil, 0)
			f.Close()
			if err != nil {
				return
			}
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
