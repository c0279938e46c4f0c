package testkit

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"testing"
	"time"
)

func TestListeningPortsSeesOwnListenersOnly(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	// A connected socket is not a listener, even on the same port.
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := ListeningPorts(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(got, port) {
		t.Errorf("ListeningPorts = %v, want %d among them", got, port)
	}
	if slices.Contains(got, c.LocalAddr().(*net.TCPAddr).Port) {
		t.Errorf("ListeningPorts = %v counts the client side %v", got, c.LocalAddr())
	}
	l.Close()
	got, err = ListeningPorts(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(got, port) {
		t.Errorf("ListeningPorts = %v still lists closed %d", got, port)
	}
}

func TestMailpitListensAndServes(t *testing.T) {
	m := StartMailpit(t)
	var info struct{ Version string }
	m.GetJSON(t, "/api/v1/info", &info)
	if info.Version == "" {
		t.Errorf("mailpit info: %+v", info)
	}
	c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(m.SMTPPort)))
	if err != nil {
		t.Fatalf("dial SMTP: %v", err)
	}
	defer c.Close()
	banner := make([]byte, 3)
	if _, err := io.ReadFull(c, banner); err != nil || string(banner) != "220" {
		t.Errorf("SMTP banner %q, %v\n%s", banner, err, m.Logs())
	}
}

func TestWaitGone(t *testing.T) {
	cmd := exec.Command("sleep", "1000")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Not reaped until WaitGone returns: the zombie must count as gone.
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	WaitGone(t, cmd.Process.Pid, 30*time.Second)
	_ = cmd.Wait()
	WaitGone(t, cmd.Process.Pid, 30*time.Second) // reaped: ESRCH
}

func TestListenBelowEphemeral(t *testing.T) {
	ln := ListenBelowEphemeral(t)
	port := ln.Addr().(*net.TCPAddr).Port
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		t.Fatal(err)
	}
	var lo, hi int
	if _, err := fmt.Sscan(string(b), &lo, &hi); err != nil {
		t.Fatal(err)
	}
	if port < 1024 || port >= lo {
		t.Errorf("port %d, want 1024 ≤ port < %d", port, lo)
	}
}
