package control

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Peers says who may use the socket besides the daemon's own uid and root.
type Peers struct {
	UIDs []int
	GIDs []int
}

// Listen opens the control socket at path: mode 0600 from its creation in
// a 0700 directory, every connection's peer checked before a byte is read.
// A path that exists is removed only when it is a socket nobody answers
// on (left by a crash); anything else there is refused.
func Listen(path string, peers Peers, log *slog.Logger) (net.Listener, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("restricting %s: %w", dir, err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket; refusing to replace it", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s: another rugwatch serve answers there", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("removing stale socket %s: %w", path, err)
		}
	}
	// The umask makes the socket 0600 from its creation: no window in which
	// another user could connect.
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	self, err := namespacesOf("self")
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("reading this process's namespaces: %w", err)
	}
	return &peerListener{Listener: ln, peers: peers, uid: os.Getuid(), self: self, log: log}, nil
}

// peerListener accepts only connections whose peer passes allowed.
type peerListener struct {
	net.Listener
	peers Peers
	uid   int
	self  [2]string // user and PID namespace of the daemon
	log   *slog.Logger
}

func (l *peerListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		cred, err := peerCred(c)
		if err == nil {
			err = l.allowed(cred)
		}
		if err == nil {
			return c, nil
		}
		c.Close()
		attrs := []any{"error", err}
		if cred != nil {
			attrs = append(attrs, "pid", cred.Pid, "uid", cred.Uid, "gid", cred.Gid)
		}
		l.log.Warn("control socket refused a connection", attrs...)
	}
}

// allowed applies the rule of DESIGN.md: the daemon's uid, root, and the
// configured uids and gids — and never a process in another user or PID
// namespace, which is where a sandboxed server runs even when its uid
// looks like ours.
func (l *peerListener) allowed(c *unix.Ucred) error {
	uid, gid := int(c.Uid), int(c.Gid)
	if uid != l.uid && uid != 0 && !slices.Contains(l.peers.UIDs, uid) && !slices.Contains(l.peers.GIDs, gid) {
		return fmt.Errorf("uid %d is not allowed (control.allow_uids / control.allow_gids)", uid)
	}
	ns, err := namespacesOf(fmt.Sprint(c.Pid))
	if err != nil {
		return fmt.Errorf("reading the peer's namespaces: %w", err)
	}
	if ns != l.self {
		return errors.New("the peer runs in another user or PID namespace (a sandboxed server?)")
	}
	return nil
}

func namespacesOf(pid string) ([2]string, error) {
	var ns [2]string
	for i, kind := range []string{"user", "pid"} {
		link, err := os.Readlink(filepath.Join("/proc", pid, "ns", kind))
		if err != nil {
			return ns, err
		}
		ns[i] = link
	}
	return ns, nil
}

func peerCred(c net.Conn) (*unix.Ucred, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return nil, errors.New("not a unix socket connection")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	if credErr != nil {
		return nil, fmt.Errorf("reading SO_PEERCRED: %w", credErr)
	}
	return cred, nil
}
