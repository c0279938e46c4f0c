package testkit

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ListenBelowEphemeral listens on a loopback port below the kernel's
// ephemeral range (ip_local_port_range), for a host listener a sandboxed
// program must not reach. The sandbox's own loopback carries its egress
// forwarder on a port the kernel picks from that range; were the host's
// listener on the same number, the program would reach its own forwarder
// and a test would report an escape that is not one (CI saw it once). A
// port the kernel never picks on its own cannot collide.
func ListenBelowEphemeral(t testing.TB) net.Listener {
	t.Helper()
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		var lo, hi int
		if _, err := fmt.Sscan(string(b), &lo, &hi); err == nil && lo > 2048 {
			low = lo
		}
	}
	span := low - 1024
	start := int(time.Now().UnixNano() % int64(span))
	for i := range 64 {
		port := 1024 + (start+i*7919)%span
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil {
			t.Cleanup(func() { ln.Close() })
			return ln
		}
		// Taken: try another.
	}
	t.Fatalf("no free loopback port below %d", low)
	return nil
}

// ListeningPorts returns the TCP ports (IPv4 and IPv6) on which process
// pid has a socket in the LISTEN state, sorted. It reads /proc: the
// socket inodes among the process's open files, matched against the
// kernel's socket tables of its network namespace. This is how a test
// learns the port of a child told to listen on port 0 when the child
// prints only the port it was given ("0"). Linux only, like rugwatch's
// sandbox.
func ListeningPorts(pid int) ([]int, error) {
	fdDir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, err := os.ReadDir(fdDir)
	if err != nil {
		return nil, fmt.Errorf("list open files of pid %d: %w", pid, err)
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join(fdDir, fd.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		if inode, ok := strings.CutPrefix(target, "socket:["); ok {
			inodes[strings.TrimSuffix(inode, "]")] = true
		}
	}
	var ports []int
	for _, table := range []string{"tcp", "tcp6"} {
		p := fmt.Sprintf("/proc/%d/net/%s", pid, table)
		found, err := listenersIn(p, inodes)
		if err != nil && !os.IsNotExist(err) { // no tcp6 without IPv6
			return nil, err
		}
		ports = append(ports, found...)
	}
	slices.Sort(ports)
	return slices.Compact(ports), nil
}

// listenersIn parses one /proc/net/tcp table: "sl local_address
// rem_address st ... inode", addresses as hex IP:port, st 0A for LISTEN.
func listenersIn(path string, inodes map[string]bool) ([]int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ports []int
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || fields[3] != "0A" || !inodes[fields[9]] {
			continue
		}
		_, hexPort, ok := strings.Cut(fields[1], ":")
		if !ok {
			continue
		}
		port, err := strconv.ParseUint(hexPort, 16, 16)
		if err != nil {
			return nil, fmt.Errorf("parse %s: local address %q: %w", path, fields[1], err)
		}
		ports = append(ports, int(port))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return ports, nil
}
