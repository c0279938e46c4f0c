package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// newRoot is where the init assembles the program's root before it pivots
// into it: a mount point every Linux has, covered in the init's private
// mount namespace by the root's own tmpfs (the host's /tmp is never
// reached from there: what lives under it arrives by descriptor).
const newRoot = "/tmp"

// etcFiles are the parts of the host's /etc a runtime reads: certificates,
// name service and resolver files, the dynamic loader's cache, time zone,
// Debian's alternatives (/usr/bin/node may point through them) and
// Python's site configuration. passwd and group are written afresh.
var etcFiles = []string{
	"/etc/ssl", "/etc/ca-certificates", "/etc/ca-certificates.conf", "/etc/pki", "/etc/crypto-policies",
	"/etc/resolv.conf", "/etc/hosts", "/etc/host.conf", "/etc/nsswitch.conf", "/etc/gai.conf",
	"/etc/services", "/etc/protocols", "/etc/localtime", "/etc/timezone",
	"/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/alternatives",
	"/etc/mime.types", "/etc/os-release", "/etc/debian_version",
}

// devNodes are the devices of the minimal /dev, bound from the host's (a
// user namespace may not create device nodes). Not tty: the program has no
// controlling terminal (the launcher's own session), and none of the
// user's is to be reached.
var devNodes = []string{"null", "zero", "full", "random", "urandom"}

// buildRoot assembles the program's root from nothing, the way bubblewrap
// does: an empty tmpfs, the system directories read-only, a minimal /dev,
// fresh /tmp, /var/tmp and /dev/shm, the HOME, the granted paths, the protected paths covered where a grant would show them;
// then pivots into it and mounts the PID namespace's own /proc. It returns
// the step that failed.
func buildRoot(sp *initSpec) (string, error) {
	// Grants are held by descriptor before the root's tmpfs covers /tmp,
	// where some of them live (a checkout, a test binary, a data dir).
	held := make([]int, len(sp.Binds))
	defer func() {
		for _, fd := range held {
			if fd > 0 {
				unix.Close(fd)
			}
		}
	}()
	for i, b := range sp.Binds {
		fd, err := openGrant(b)
		if err != nil {
			return "granting " + b.Path, err
		}
		held[i] = fd
	}
	if err := unix.Mount("tmpfs", newRoot, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755,size=16m"); err != nil {
		return "mounting the sandbox's root", err
	}
	r := func(p string) string { return newRoot + p }
	for _, p := range systemPrefixes {
		if err := bindSystem(p, r(p)); err != nil {
			return "binding " + p, err
		}
	}
	etc := etcFiles
	if more, err := filepath.Glob("/etc/python3*"); err == nil {
		etc = append(etc, more...)
	}
	for _, p := range etc {
		if err := bindSystem(p, r(p)); err != nil {
			return "binding " + p, err
		}
	}
	if err := writeIdentity(r("/etc"), sp); err != nil {
		return "writing /etc/passwd and /etc/group", err
	}
	if err := makeDev(r("/dev")); err != nil {
		return "making /dev", err
	}
	for _, d := range []string{"/tmp", "/var/tmp"} {
		if err := mountTmpfs(r(d), "mode=1777,size=256m"); err != nil {
			return "mounting a private " + d, err
		}
	}
	if sp.Home == "" {
		if err := mountTmpfs(r(freshHome), fmt.Sprintf("mode=0700,size=256m,uid=%d,gid=%d", sp.InitUID, sp.InitGID)); err != nil {
			return "mounting a fresh HOME", err
		}
	}
	for i, b := range sp.Binds {
		if err := bindGrant(b, held[i], r(b.Path)); err != nil {
			return "granting " + b.Path, err
		}
	}
	if err := protect(sp, r); err != nil {
		return "covering protected paths", err
	}
	// The init is PID 1 of the new PID namespace, so this /proc shows the
	// sandbox's processes and nothing of the daemon's; in a network
	// namespace of its own, /proc/net shows only the sandbox's sockets. It
	// is mounted before the pivot: the kernel lets a user namespace mount
	// a proc only while a fully visible one is in its mount namespace.
	if err := os.MkdirAll(r("/proc"), 0o755); err != nil {
		return "making /proc", err
	}
	if err := unix.Mount("proc", r("/proc"), "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return "mounting /proc", err
	}
	if err := pivot(); err != nil {
		return "entering the sandbox's root", err
	}
	// Nothing may be added to the root itself.
	if err := unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return "making the root read-only", err
	}
	if fi, err := os.Stat(sp.Dir); err != nil || !fi.IsDir() {
		return "entering the working directory", fmt.Errorf("%s is not in the sandbox: grant it with mounts", sp.Dir)
	}
	return "", nil
}

// bindSystem binds one host system path read-only at dst, or recreates it
// when it is a symlink (/bin → usr/bin on merged-/usr systems). A missing
// path is skipped.
func bindSystem(src, dst string) error {
	fi, err := os.Lstat(src)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSymlink != 0 && !strings.HasPrefix(src, "/etc/") {
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		return os.Symlink(target, dst)
	}
	// /etc entries that are symlinks (resolv.conf into /run) are bound
	// from what they point at.
	st, err := os.Stat(src)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	if err := mountPoint(dst, st.IsDir()); err != nil {
		return err
	}
	return bindReadOnly(src, dst, false)
}

// openGrant opens what the daemon saw at b.Path and nothing else: no link
// on the way (a program that can write beside a grant could have put one
// there since), and the same file (device and inode).
func openGrant(b bind) (int, error) {
	fd, err := unix.Openat2(unix.AT_FDCWD, b.Path, &unix.OpenHow{
		Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS})
	if errors.Is(err, unix.ENOSYS) {
		// Before Linux 5.6: the final component at least.
		fd, err = unix.Open(b.Path, unix.O_PATH|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	}
	if err != nil {
		return -1, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if b.Ino != 0 && (st.Dev != b.Dev || st.Ino != b.Ino) {
		unix.Close(fd)
		return -1, fmt.Errorf("%s is not the file the daemon checked (replaced meanwhile)", b.Path)
	}
	return fd, nil
}

// noLinks refuses a mount target under newRoot that a link leads through:
// inside a writable grant the program could have made one, and a mount
// (or a mount point created) through it would land outside the new root.
func noLinks(dst string) error {
	rel, ok := strings.CutPrefix(dst, newRoot+"/")
	if !ok {
		return fmt.Errorf("%s is not under the sandbox's root", dst)
	}
	at := newRoot
	for _, part := range strings.Split(rel, "/") {
		at += "/" + part
		fi, err := os.Lstat(at)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			return fmt.Errorf("%s leads through a link", strings.TrimPrefix(at, newRoot))
		}
	}
	return nil
}

// bindGrant binds a granted path, held by fd, at dst.
func bindGrant(b bind, fd int, dst string) error {
	if err := noLinks(dst); err != nil {
		return err
	}
	if err := mountPoint(dst, b.Dir); err != nil {
		return err
	}
	return bindReadOnly(fmt.Sprintf("/proc/self/fd/%d", fd), dst, b.Write)
}

// bindReadOnly binds src at dst with everything beneath it, then takes
// write (unless write), set-uid and device access away recursively.
func bindReadOnly(src, dst string, write bool) error {
	if err := unix.Mount(src, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV}
	if !write {
		attr.Attr_set |= unix.MOUNT_ATTR_RDONLY
	}
	err := unix.MountSetattr(-1, dst, unix.AT_RECURSIVE, attr)
	if !errors.Is(err, unix.ENOSYS) {
		if err != nil {
			return fmt.Errorf("mount_setattr: %w", err)
		}
		return nil
	}
	// Before Linux 5.12: the top mount only, keeping the flags the kernel
	// locked on it (a remount may add flags, never drop them).
	var fs unix.Statfs_t
	if err := unix.Statfs(dst, &fs); err != nil {
		return err
	}
	flags := uintptr(unix.MS_REMOUNT | unix.MS_BIND | unix.MS_NOSUID | unix.MS_NODEV)
	if !write {
		flags |= unix.MS_RDONLY
	}
	for _, f := range []struct{ st, ms int64 }{{unix.ST_NOEXEC, unix.MS_NOEXEC}, {unix.ST_NOATIME, unix.MS_NOATIME}, {unix.ST_NODIRATIME, unix.MS_NODIRATIME}, {unix.ST_RELATIME, unix.MS_RELATIME}} {
		if fs.Flags&f.st != 0 {
			flags |= uintptr(f.ms)
		}
	}
	return unix.Mount("", dst, "", flags, "")
}

// mountPoint creates what dst needs to be mounted on: a directory, or an
// empty file, and the directories above it.
func mountPoint(dst string, dir bool) error {
	if dir {
		return os.MkdirAll(dst, 0o755)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}

func mountTmpfs(dst, opts string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	return unix.Mount("tmpfs", dst, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts)
}

// makeDev builds a minimal /dev: the usual character devices, the
// standard stream links and a private /dev/shm.
func makeDev(dev string) error {
	if err := mountTmpfs(dev, "mode=0755,size=64k"); err != nil {
		return err
	}
	for _, n := range devNodes {
		src := "/dev/" + n
		if _, err := os.Stat(src); err != nil {
			continue
		}
		if err := mountPoint(dev+"/"+n, false); err != nil {
			return err
		}
		if err := unix.Mount(src, dev+"/"+n, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("binding %s: %w", src, err)
		}
	}
	for name, target := range map[string]string{"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"} {
		if err := os.Symlink(target, dev+"/"+name); err != nil {
			return err
		}
	}
	return unix.Mount("tmpfs", mkdir(dev+"/shm"), "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=1777,size=64m")
}

func mkdir(p string) string {
	_ = os.MkdirAll(p, 0o755)
	return p
}

// writeIdentity writes a passwd and a group that name only root, the
// program's own user and nobody: tools that look their user up find it,
// and the host's accounts stay unknown.
func writeIdentity(etc string, sp *initSpec) error {
	if err := os.MkdirAll(etc, 0o755); err != nil {
		return err
	}
	home := homeOf(*sp)
	uid, gid := strconv.Itoa(sp.UID), strconv.Itoa(sp.GID)
	name := "rugwatch"
	if sp.UID == nobody {
		name = "nobody"
	}
	passwd := "root:x:0:0:root:/root:/usr/sbin/nologin\n" + name + ":x:" + uid + ":" + gid + ":rugwatch sandbox:" + home + ":/bin/sh\n"
	group := "root:x:0:\n" + name + ":x:" + gid + ":\n"
	if sp.UID != nobody {
		passwd += "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
		group += "nogroup:x:65534:\n"
	}
	if err := os.WriteFile(etc+"/passwd", []byte(passwd), 0o644); err != nil {
		return err
	}
	return os.WriteFile(etc+"/group", []byte(group), 0o644)
}

// protect covers every protected path that a grant exposes: one that lies
// inside a bound path (a data dir inside a granted checkout). A protected
// path above a grant needs nothing: the root shows only the grant.
func protect(sp *initSpec, r func(string) string) error {
	var empty string
	for _, p := range sp.Protect {
		exposed := false
		for _, b := range sp.Binds {
			if within(p, b.Path) {
				exposed = true
				break
			}
		}
		if !exposed {
			continue
		}
		if err := noLinks(r(p)); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		var st unix.Stat_t
		if err := unix.Lstat(r(p), &st); err != nil {
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.EACCES) {
				continue
			}
			return fmt.Errorf("%s: %w", p, err)
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			if err := unix.Mount("tmpfs", r(p), "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0000,size=4k,nr_inodes=1"); err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			continue
		}
		if empty == "" {
			// An empty, unreadable file in the root's own tmpfs to bind
			// over protected files (not /dev/null: a device opens for
			// writing even on a read-only mount).
			empty = r("/.rugwatch-empty")
			if err := os.WriteFile(empty, nil, 0); err != nil {
				return err
			}
		}
		if err := unix.Mount(empty, r(p), "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if err := unix.Mount("", r(p), "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			return fmt.Errorf("%s: making it read-only: %w", p, err)
		}
	}
	return nil
}

// pivot makes newRoot the root and drops the host's from this mount
// namespace altogether.
func pivot() error {
	if err := unix.Chdir(newRoot); err != nil {
		return err
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detaching the host's root: %w", err)
	}
	return unix.Chdir("/")
}
