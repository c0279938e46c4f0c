// Package sandbox confines the code rugwatch launches: every stdio MCP
// server it polls, watches or proxies, `scan`'s target and the classifier.
// It owns the boundary between rugwatch and the hostile code it watches,
// and the one start policy (Cmd.Start) that decides whether a program may
// ever run outside it. It imports nothing but the standard library and
// golang.org/x/sys/unix, so it can be read and audited on its own.
//
// # What a sandboxed program sees
//
// An allow-list, built the way bubblewrap and Flatpak build one, never a
// full view of the host with parts hidden:
//
//   - an empty root (tmpfs, read-only once built) holding the system
//     directories read-only (/usr, /bin, /sbin, /lib*), the parts of /etc
//     a runtime reads (certificates, resolver and name-service files, the
//     loader cache, Debian's alternatives, Python's site config) and a
//     passwd and group that name only root, its own user and nobody;
//   - its code, read-only, at the same paths: the executable, the
//     interpreter of its #! line with its installation prefix, the
//     outermost node_modules around either, a script named by absolute
//     path and its directory (code.go);
//   - a HOME of its own: Spec.Home, persistent and read-write
//     (<data_dir>/servers/<name>/home: npx and uvx caches, a memory
//     server's file), else a fresh tmpfs;
//   - a fresh /tmp, /var/tmp and /dev/shm, a minimal /dev (null, zero, full,
//     random, urandom, tty) and a /proc of its own PID namespace;
//   - what Spec.Mounts grants, read-only or read-write, and nothing else.
//     Spec.Protect paths (data dir, config, keys, secrets, the control
//     socket) stay covered even inside a grant.
//
// Nothing else of the host is there to read, write, rename or replace: not
// the user's HOME with its keys and shell files, /run/user with the
// ssh-agent and D-Bus sockets, other servers' homes, rugwatch's binary,
// config or data dir.
//
// # Network
//
// NetEgress (the default) gives the program a network namespace of its
// own: its own loopback, so the host's loopback listeners, abstract unix
// sockets and /proc/net are out of reach. The init listens on that
// loopback and hands every connection, as a descriptor, to the daemon,
// whose Egress (egress.go) lets through only the host:port patterns of the
// allow-list, and reports each refused destination once. HTTP_PROXY,
// HTTPS_PROXY, their lower-case forms, npm's proxy settings and
// NODE_USE_ENV_PROXY point there, so npm and npx, pip and uv, Python,
// curl, Go's net/http and Node 22.21+'s fetch reach allowed hosts (Go
// never proxies 127.0.0.1 or localhost, so a Go server reaches a granted
// local API only by one of the host's other addresses). A
// program that ignores proxy variables (Node 20's fetch, a raw socket)
// meets a network with no route out: its connection fails at once with
// ENETUNREACH, which shows in the poll's error with its stderr. A name
// that resolves to a loopback or link-local address (DNS rebinding, cloud
// metadata at 169.254.169.254), a private network or one of the host's own
// addresses is refused unless the allow-list names the address itself. NetNone allows nothing; NetHost shares the host's
// network and is unsafe.
//
// Within the allow-list, an Egress's Pin (pin.go) reports every
// destination a server uses and, enforced, refuses those outside the set
// approved for it: behaviour pinning. This package only sees and refuses;
// what a new destination means is the monitor's decision.
//
// # Resources and system calls
//
// RLIMIT_NPROC bounds processes and threads; the exec stage sets it, in
// raw system calls right before the exec, inside the program's own user
// namespace, so (Linux 5.14 and later) it counts the program's tasks alone
// and a fork bomb ends its own poll. RLIMIT_DATA bounds each process's
// memory, set the same way (the default is left out in race-enabled
// builds, whose shadow memory cannot live under it: there only an explicit
// limit applies).
// RLIMIT_CORE is 0. No cgroup is used yet: the CPU share and an aggregate
// memory bound need a delegated cgroup v2, which this package does not
// create (see the README). no_new_privs is set, and a seccomp filter
// (seccomp_linux.go) refuses what no MCP server needs: new namespaces,
// mount, ptrace, keyrings, bpf, userfaultfd, perf_event_open, kexec, module
// loading, io_uring, terminal injection, and socket families outside unix,
// inet, inet6 and netlink.
//
// # Mechanism: three stages of this binary
//
// Cmd.Start re-executes this very binary (/proc/self/exe, which resolves
// even where the daemon's directory is closed to others) three times:
//
//  1. the launcher, started plainly. The daemon is not dumpable
//     (HardenSelf); a non-dumpable process's children start non-dumpable,
//     their /proc/<pid>/uid_map then belongs to root, and an ordinary
//     user's daemon could not map a user namespace for them (this is why
//     `serve` as an ordinary user used to run everything unconfined). An
//     exec makes the launcher dumpable again; it holds nothing secret,
//     creates the user, PID, mount, IPC, UTS and (unless NetHost) network
//     namespaces with the init in them, then makes itself non-dumpable.
//  2. the init, PID 1 there and root of that user namespace only: the
//     daemon's own user in the kernel's eyes, or, for a root daemon, root
//     mapped to itself beside nobody (so it can bind what root's closed
//     directories hold) while the program runs as nobody. It reads its spec
//     from a pipe (not argv or the environment, which /proc/1 shows), makes
//     itself non-dumpable, builds the root (root_linux.go) and pivots into
//     it, brings up loopback and the egress forwarder, sets the limits and
//     no_new_privs, starts the exec stage, reports, and reaps. When it
//     exits the kernel kills everything left in its PID namespace, so every
//     process the program started, double-forked or not, is gone.
//  3. the exec stage, in a nested user and mount namespace, as the
//     program's non-root user there with no capabilities: it sets the
//     memory limit, installs the seccomp filter and execs the program.
//     Mounts copied into a mount namespace owned by a less privileged user
//     namespace are locked by the kernel (MNT_LOCKED), so nothing can be
//     unmounted to uncover what lies beneath.
//
// Each stage dies with its parent (SIGKILL as parent-death signal);
// killing the launcher's process group ends the whole sandbox. The launcher
// starts a session of its own, so no controlling terminal reaches the
// program. Grants are bound as the daemon saw them: the init opens each
// without following a link and checks its device and inode, and refuses a
// mount target a link leads through.
//
// # Why our own init and not bubblewrap
//
// bubblewrap builds the same kind of root, and its design is followed
// here. It was not chosen, on this evidence: rugwatch's Quick Start must
// work with Go and Node alone (bwrap is a system package, and absent from
// distroless and most CI images); the egress path needs code of ours
// inside the network namespace (the forwarder), which with bwrap would mean
// binding rugwatch's own binary into every sandbox; `sandbox: auto` must
// tell the kernel's refusal of namespaces from every other failure, which
// the stages report as structured steps where bwrap prints text; and the
// whole mechanism here is about 600 lines of Go that the suite attacks as
// root and as an ordinary user. Measured on the CI machine (2 cores), a
// sandboxed start costs a few milliseconds over an unconfined one (see
// BenchmarkStart and monitor's BenchmarkPollStdio).
//
// # Who may run it, and where it is refused
//
// The same confinement holds for root and for an ordinary user, under
// `serve`, `check`, `scan`, `proxy` and the classifier. Starting fails with
// a *RefusedError only when the kernel refuses the namespaces: clone
// returns EPERM, EINVAL, ENOSPC or EUSERS, or (Ubuntu 23.10 and later,
// AppArmor) the namespace has no capabilities and the first mount fails.
// Only then does `sandbox: auto` run a program unconfined, marked NOT
// SANDBOXED in check, status, scan and the web view; any other failure is a
// *SetupError that fails the poll under every mode. To get the sandbox
// back where the kernel refuses:
//
//   - Debian and older Ubuntu: sysctl -w kernel.unprivileged_userns_clone=1
//   - any distribution: sysctl -w user.max_user_namespaces=15000
//   - Ubuntu 24.04: an AppArmor profile for the rugwatch binary allowing
//     `userns,` (as Ubuntu ships for bwrap), or
//     kernel.apparmor_restrict_unprivileged_userns=0
//   - systemd: the shipped unit allows the namespaces the sandbox needs
//     (RestrictNamespaces=yes would refuse them all)
//   - a container: the runtime must allow clone with CLONE_NEWUSER and
//     mounting a fresh proc (docker: --security-opt seccomp=unconfined
//     --security-opt apparmor=unconfined --security-opt systempaths=unconfined;
//     podman allows nested user namespaces by default)
//
// On other systems every start is refused as by the kernel.
package sandbox
