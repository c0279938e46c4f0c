package sandbox

// The system-call filter the server runs under.
//
// The boundary is the namespaces and the allow-list filesystem the init
// builds; this filter is defence in depth. It takes away the kernel surface
// a server would need to attack that boundary rather than do its job:
// making new namespaces (the way to become root of one and reach mount
// code), mounting and moving mounts, ptrace and cross-process memory
// access, keyrings, bpf, io_uring, userfaultfd (the kernel exploit's usual
// helpers), module loading and the like.
//
// That part is a deny-list on purpose. An allow-list of every system call
// node, python, uv and go servers make would break real servers whenever a
// runtime or libc learns a new call, and a sandbox that breaks servers gets
// turned off; refusing the few calls no server needs is the choice
// Flatpak and Docker's default profile make for the same calls. Where an
// allow-list costs nothing it is one: a call from any architecture but the
// native one kills the process (a 32-bit call would index another syscall
// table and slip past every number below), and a socket can only be of the
// families a server uses (unix, IPv4, IPv6, netlink), which keeps the
// code of every other protocol family, a steady source of kernel bugs, out
// of reach.
//
// Refused calls fail with an errno rather than killing the process, so a
// runtime that probes for a feature (glibc trying clone3, a library trying
// io_uring) falls back instead of crashing.

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Offsets into struct seccomp_data, the input of the filter: int nr,
// u32 arch, u64 instruction_pointer, u64 args[6].
const (
	seccompDataNr   = 0
	seccompDataArch = 4
	seccompDataArgs = 16
)

// x32SyscallBit marks the x32 ABI's system calls on x86-64. They come with
// the native audit architecture but run through a table of their own.
const x32SyscallBit = 0x40000000

// namespaceCloneFlags are the clone flags that make a new namespace.
// CLONE_NEWTIME (0x80) overlaps the exit-signal byte of clone(2), where no
// valid signal has that bit, so refusing it there refuses nothing real.
const namespaceCloneFlags = unix.CLONE_NEWUSER | unix.CLONE_NEWNS | unix.CLONE_NEWPID |
	unix.CLONE_NEWNET | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWCGROUP |
	unix.CLONE_NEWTIME

// installSeccomp sets no_new_privs and installs the sandbox's system-call
// filter on every thread of the calling process
// (SECCOMP_FILTER_FLAG_TSYNC), so that it holds for whatever the process
// execs next.
func installSeccomp() error {
	arch, err := nativeArch()
	if err != nil {
		return err
	}
	prog, err := seccompProgram(arch)
	if err != nil {
		return fmt.Errorf("building the seccomp filter: %w", err)
	}
	// no_new_privs is set per thread; seccomp(2) checks it on the calling
	// thread, and TSYNC copies it to the others. Stay on one thread between
	// the two calls.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("setting no_new_privs: %w", err)
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	r, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(prog)
	if errno != 0 {
		return fmt.Errorf("loading the program with seccomp(2): %w", errno)
	}
	// With TSYNC a positive result is the id of a thread that could not
	// take the filter, and then no thread has it.
	if r != 0 {
		return fmt.Errorf("loading the program with seccomp(2): thread %d could not take it", r)
	}
	return nil
}

// archFilter is what the filter needs to know about the architecture it
// runs on.
type archFilter struct {
	audit    uint32    // AUDIT_ARCH_* of native calls; anything else is killed
	x32      bool      // refuse x32 calls (amd64 only)
	refusals []refusal // calls whose numbers unix.SYS_* lacks on some GOARCH
}

// nativeArch describes the architecture this binary was built for. Only
// little-endian 64-bit architectures are described: argLow depends on it.
func nativeArch() (archFilter, error) {
	// The numbers here are written out because unix.SYS_IOPL and
	// unix.SYS_KEXEC_FILE_LOAD are not defined for every GOARCH this
	// package must still build for (iopl exists only on x86, and 386 and
	// mips lack kexec_file_load).
	switch runtime.GOARCH {
	case "amd64":
		return archFilter{
			audit: unix.AUDIT_ARCH_X86_64,
			x32:   true,
			refusals: []refusal{
				// iopl and ioperm open I/O ports.
				{"iopl", 172, unix.EPERM},
				{"ioperm", 173, unix.EPERM},
				{"kexec_file_load", 320, unix.EPERM},
			},
		}, nil
	case "arm64":
		return archFilter{
			audit:    unix.AUDIT_ARCH_AARCH64,
			refusals: []refusal{{"kexec_file_load", 294, unix.EPERM}},
		}, nil
	}
	return archFilter{}, fmt.Errorf("no seccomp filter for %s: %w", runtime.GOARCH, errors.ErrUnsupported)
}

// refusal is a system call the filter answers with an errno.
type refusal struct {
	name  string // for tests and readers
	nr    uint32
	errno unix.Errno
}

// refusedSyscalls lists the calls no MCP server needs and the errno each
// gets. The unix.SYS_* numbers are those of the architecture being built,
// which is the only one the filter lets through.
func refusedSyscalls() []refusal {
	return []refusal{
		// Namespaces and mounts: the boundary itself.
		{"mount", unix.SYS_MOUNT, unix.EPERM},
		{"umount2", unix.SYS_UMOUNT2, unix.EPERM},
		{"pivot_root", unix.SYS_PIVOT_ROOT, unix.EPERM},
		{"chroot", unix.SYS_CHROOT, unix.EPERM},
		{"setns", unix.SYS_SETNS, unix.EPERM},
		{"unshare", unix.SYS_UNSHARE, unix.EPERM},
		{"fsopen", unix.SYS_FSOPEN, unix.EPERM},
		{"fsconfig", unix.SYS_FSCONFIG, unix.EPERM},
		{"fsmount", unix.SYS_FSMOUNT, unix.EPERM},
		{"fspick", unix.SYS_FSPICK, unix.EPERM},
		{"move_mount", unix.SYS_MOVE_MOUNT, unix.EPERM},
		{"open_tree", unix.SYS_OPEN_TREE, unix.EPERM},
		{"open_tree_attr", unix.SYS_OPEN_TREE_ATTR, unix.EPERM},
		{"mount_setattr", unix.SYS_MOUNT_SETATTR, unix.EPERM},
		// File handles open any file of a mounted filesystem by inode,
		// around the hiding mounts.
		{"open_by_handle_at", unix.SYS_OPEN_BY_HANDLE_AT, unix.EPERM},
		{"name_to_handle_at", unix.SYS_NAME_TO_HANDLE_AT, unix.EPERM},
		// Other processes.
		{"ptrace", unix.SYS_PTRACE, unix.EPERM},
		{"process_vm_readv", unix.SYS_PROCESS_VM_READV, unix.EPERM},
		{"process_vm_writev", unix.SYS_PROCESS_VM_WRITEV, unix.EPERM},
		{"pidfd_getfd", unix.SYS_PIDFD_GETFD, unix.EPERM},
		// Keyrings are not namespaced.
		{"keyctl", unix.SYS_KEYCTL, unix.EPERM},
		{"add_key", unix.SYS_ADD_KEY, unix.EPERM},
		{"request_key", unix.SYS_REQUEST_KEY, unix.EPERM},
		// Kernel attack surface no server uses.
		{"bpf", unix.SYS_BPF, unix.EPERM},
		{"userfaultfd", unix.SYS_USERFAULTFD, unix.EPERM},
		{"perf_event_open", unix.SYS_PERF_EVENT_OPEN, unix.EPERM},
		{"io_uring_setup", unix.SYS_IO_URING_SETUP, unix.EPERM},
		{"io_uring_enter", unix.SYS_IO_URING_ENTER, unix.EPERM},
		{"io_uring_register", unix.SYS_IO_URING_REGISTER, unix.EPERM},
		{"lookup_dcookie", unix.SYS_LOOKUP_DCOOKIE, unix.EPERM},
		// The machine's, not the sandbox's.
		{"kexec_load", unix.SYS_KEXEC_LOAD, unix.EPERM},
		{"init_module", unix.SYS_INIT_MODULE, unix.EPERM},
		{"finit_module", unix.SYS_FINIT_MODULE, unix.EPERM},
		{"delete_module", unix.SYS_DELETE_MODULE, unix.EPERM},
		{"swapon", unix.SYS_SWAPON, unix.EPERM},
		{"swapoff", unix.SYS_SWAPOFF, unix.EPERM},
		{"reboot", unix.SYS_REBOOT, unix.EPERM},
		{"acct", unix.SYS_ACCT, unix.EPERM},
		{"quotactl", unix.SYS_QUOTACTL, unix.EPERM},
		{"quotactl_fd", unix.SYS_QUOTACTL_FD, unix.EPERM},
		{"syslog", unix.SYS_SYSLOG, unix.EPERM},
		{"vhangup", unix.SYS_VHANGUP, unix.EPERM},
		// clone3 takes its flags from memory, which a filter cannot read,
		// so a namespace flag could not be refused. ENOSYS makes glibc fall
		// back to clone, whose flags the filter does read.
		{"clone3", unix.SYS_CLONE3, unix.ENOSYS},
	}
}

// socketFamilies are the only address families a socket may have.
func socketFamilies() []uint32 {
	return []uint32{unix.AF_UNIX, unix.AF_INET, unix.AF_INET6, unix.AF_NETLINK}
}

// seccompProgram builds the filter for arch.
func seccompProgram(arch archFilter) ([]unix.SockFilter, error) {
	const (
		jeq  = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		jge  = unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K
		jset = unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K
	)
	allow := uint32(unix.SECCOMP_RET_ALLOW)
	var b bpfBuilder
	b.load(seccompDataArch)
	b.retUnless(jeq, arch.audit, unix.SECCOMP_RET_KILL_PROCESS)
	b.load(seccompDataNr)
	if arch.x32 {
		// No native x86-64 call is numbered this high, so ENOSYS for all
		// of them loses nothing.
		b.retIf(jge, x32SyscallBit, retErrno(unix.ENOSYS))
	}
	for _, r := range append(refusedSyscalls(), arch.refusals...) {
		b.retIf(jeq, r.nr, retErrno(r.errno))
	}
	b.onSyscall(unix.SYS_CLONE, func(b *bpfBuilder) {
		b.load(argLow(0))
		b.retIf(jset, namespaceCloneFlags, retErrno(unix.EPERM))
		b.ret(allow)
	})
	// TIOCSTI pushes input into the terminal as if typed; TIOCLINUX can
	// paste the console selection. Either lets a server type commands into
	// the user's shell.
	b.onSyscall(unix.SYS_IOCTL, func(b *bpfBuilder) {
		b.load(argLow(1))
		b.retIf(jeq, unix.TIOCSTI, retErrno(unix.EPERM))
		b.retIf(jeq, unix.TIOCLINUX, retErrno(unix.EPERM))
		b.ret(allow)
	})
	// socketpair creates its sockets through the same family code as
	// socket, so it gets the same allow-list.
	for _, nr := range []uint32{unix.SYS_SOCKET, unix.SYS_SOCKETPAIR} {
		b.onSyscall(nr, func(b *bpfBuilder) {
			b.load(argLow(0))
			for _, f := range socketFamilies() {
				b.retIf(jeq, f, allow)
			}
			b.ret(retErrno(unix.EAFNOSUPPORT))
		})
	}
	b.ret(allow)
	if b.err != nil {
		return nil, b.err
	}
	if len(b.prog) > unix.BPF_MAXINSNS {
		return nil, fmt.Errorf("program has %d instructions, more than the kernel's %d", len(b.prog), unix.BPF_MAXINSNS)
	}
	return b.prog, nil
}

// argLow is the offset of the low 32 bits of system call argument i.
// Classic BPF loads 32-bit words and the arguments are u64 in native order,
// little-endian on every architecture nativeArch admits. Every argument
// the filter reads (clone flags, the ioctl request, the socket family) is
// truncated to 32 bits by the kernel, so only the low half decides what
// the call does; a filter that also required the high half to be zero
// could be passed by setting a high bit the kernel then ignores.
func argLow(i uint32) uint32 { return seccompDataArgs + 8*i }

func retErrno(e unix.Errno) uint32 {
	return unix.SECCOMP_RET_ERRNO | uint32(e)&unix.SECCOMP_RET_DATA
}

// bpfBuilder appends classic BPF instructions. Every decision is written as
// "if the accumulator compares so, return this", a jump over a single
// return instruction, and a block that applies to one system call is
// jumped over as a whole, its length measured after it is built; no
// offset is counted by hand.
type bpfBuilder struct {
	prog []unix.SockFilter
	err  error
}

// load puts the 32-bit word at off in seccomp_data into the accumulator.
func (b *bpfBuilder) load(off uint32) {
	b.prog = append(b.prog, unix.SockFilter{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: off})
}

func (b *bpfBuilder) ret(action uint32) {
	b.prog = append(b.prog, unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: action})
}

// retIf returns action when the jump op against k is taken.
func (b *bpfBuilder) retIf(op uint16, k, action uint32) {
	b.prog = append(b.prog, unix.SockFilter{Code: op, K: k, Jt: 0, Jf: 1})
	b.ret(action)
}

// retUnless returns action when the jump op against k is not taken.
func (b *bpfBuilder) retUnless(op uint16, k, action uint32) {
	b.prog = append(b.prog, unix.SockFilter{Code: op, K: k, Jt: 1, Jf: 0})
	b.ret(action)
}

// onSyscall runs the block body builds only for system call nr, which must
// be in the accumulator. The block must end in a return: it overwrites the
// accumulator, so falling out of it would compare an argument with the
// system call numbers that follow.
func (b *bpfBuilder) onSyscall(nr uint32, body func(*bpfBuilder)) {
	var blk bpfBuilder
	body(&blk)
	switch {
	case blk.err != nil:
		b.err = errors.Join(b.err, blk.err)
		return
	case len(blk.prog) == 0 || blk.prog[len(blk.prog)-1].Code != unix.BPF_RET|unix.BPF_K:
		b.err = errors.Join(b.err, fmt.Errorf("the block for system call %d does not end in a return", nr))
		return
	case len(blk.prog) > math.MaxUint8:
		b.err = errors.Join(b.err, fmt.Errorf("the block for system call %d has %d instructions, too many to jump over", nr, len(blk.prog)))
		return
	}
	b.prog = append(b.prog, unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: nr, Jt: 0, Jf: uint8(len(blk.prog))})
	b.prog = append(b.prog, blk.prog...)
}
