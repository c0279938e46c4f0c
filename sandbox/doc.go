// Package sandbox confines hostile code that rugwatch itself launches: the
// stdio MCP servers the monitor polls today, and the proxy's upstreams and a
// classifier hook later. It is its own package because what it owns, the
// boundary between rugwatch and the code it watches, must not depend on
// who launches that code; it imports nothing but the standard library and
// golang.org/x/sys/unix, so it can be read and audited on its own.
//
// # Mechanism (Linux)
//
// Command builds an exec.Cmd that re-executes this very binary
// (/proc/self/exe, so a daemon whose executable sits in a directory the
// sandbox user cannot enter still starts) as a small init, in fresh user,
// PID, mount and IPC namespaces, with SIGKILL as its parent-death signal.
// Every binary that uses the package calls Init first thing in main (and
// tests in TestMain): it returns at once unless the process was started as
// that init. The init
//
//   - makes every mount private, so nothing it mounts leaks back to the host;
//   - hides every path of the caller's list: a read-only, mode 0000 tmpfs
//     over a directory, a read-only bind of /dev/null over anything else
//     (the data dir, the config file, every ${file:} secret, trusted keys,
//     the signing key, the control socket);
//   - mounts a private tmpfs on /tmp and /dev/shm and a fresh /proc that
//     shows only the sandbox's own processes, so the daemon cannot be seen,
//     read through /proc/<pid>/environ or signalled;
//   - sets no_new_privs and makes itself non-dumpable;
//   - starts the server in a nested user and mount namespace, as a non-root
//     user of it with no capabilities. Mounts copied into a mount namespace
//     owned by a less privileged user namespace are locked by the kernel
//     (MNT_LOCKED, the idea bubblewrap uses), so neither the server nor
//     anything it starts, even after `unshare -Urm` makes it root of yet
//     another namespace, can unmount a hiding mount or bind the directory
//     beneath it elsewhere;
//   - stays as PID 1: it forwards SIGTERM, SIGINT and SIGHUP to the
//     server, reaps every orphan, and exits with the server's status. When
//     PID 1 of a PID namespace exits the kernel kills everything left in
//     it, so every process the server started, including a double-forked,
//     setsid, empty-environment grandchild, is gone when the poll ends.
//
// The server's standard input, output and error are passed straight
// through. It sees only the environment the caller gives it, never the
// daemon's or the init's. Network is shared: servers need it.
//
// # Users
//
// A daemon running as an ordinary user maps its own uid and gid to 0 in
// the outer namespace, and the server runs as that same uid in the nested
// one: it has the daemon's file permissions minus everything hidden. A
// daemon running as root maps the sandbox to uid and gid 65534 (nobody)
// with no supplementary groups instead: ns-root mapped to kernel uid 0
// would read every root-owned 0600 file not on the hide list, and a peer
// credential check would see uid 0. Such a server needs its executable and
// its runtime to be readable by others, and when its HOME is not usable by
// uid 65534 (root's /root is 0700) it gets a private, empty HOME on its own
// /tmp, so npx and uvx still work but download their packages on every
// poll; give it a persistent HOME owned by 65534 (outside the data dir) in
// the server's env to keep a cache.
//
// # Where unprivileged user namespaces are disabled
//
// Starting the sandbox fails when the kernel refuses the namespaces: clone
// returns EPERM, EINVAL or ENOSPC, or (Ubuntu 23.10 and later, AppArmor)
// the namespace is created without capabilities and the first mount fails.
// The caller decides what that means: rugwatch's `sandbox: auto` (the
// default) then runs the server unsandboxed, logs a warning once per server
// saying why and records it (status --json shows sandboxed: false and the
// reason); `sandbox: strict` refuses to start the server; `sandbox: off`
// never tries and is unsafe. To get the sandbox back:
//
//   - Debian and older Ubuntu: sysctl -w kernel.unprivileged_userns_clone=1
//   - any distribution: sysctl -w user.max_user_namespaces=15000 (0
//     disables user namespaces for everyone)
//   - Ubuntu 24.04: sysctl -w kernel.apparmor_restrict_unprivileged_userns=0,
//     or, better, an AppArmor profile for the rugwatch binary that allows
//     `userns,` (as Ubuntu ships for bwrap), or run the daemon as root,
//     which AppArmor does not restrict
//   - in a container: the runtime's seccomp profile must allow clone with
//     CLONE_NEWUSER and /proc must not be partly masked (docker: run with
//     --security-opt seccomp=unconfined --security-opt systempaths=unconfined,
//     or use podman, which allows nested user namespaces)
//
// Put the sysctl in /etc/sysctl.d/ to keep it across reboots, and use
// `sandbox: strict` where running a server unconfined is not acceptable.
//
// The server's /tmp is its own and empty: a server whose executable or
// working directory lives under the host's /tmp cannot be found in the
// sandbox (auto then runs it unsandboxed, with the reason).
//
// # What it does not do
//
// It does not restrict the network, system calls (no seccomp) or
// resources, and it hides paths by name: a hard link or a second mount of
// a hidden file elsewhere stays reachable. Abstract unix sockets are
// shared with the host's network namespace. On other systems Command
// returns an *UnavailableError.
package sandbox
