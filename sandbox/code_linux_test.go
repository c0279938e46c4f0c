package sandbox

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// What a program needs besides the system: its code, the package around
// it, the environment beside a runtime's link, scripts named as
// arguments; never a data file or a directory named as an argument.
func TestCodePaths(t *testing.T) {
	dir := outsideTmp(t)
	write := func(rel, body string, mode os.FileMode) string {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// A venv: bin/python links to the system's, lib/ holds its packages.
	venv := filepath.Join(dir, "venv")
	if err := os.MkdirAll(filepath.Join(venv, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(venv, "lib", "python3", "site-packages"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/bin/sh", filepath.Join(venv, "bin", "python")); err != nil {
		t.Fatal(err)
	}
	script := write("app/server.py", "import x\n", 0o644)
	state := write("app/state.db", "data", 0o644)
	write("proj/node_modules/@s/pkg/dist/index.js", "#!/usr/bin/env node\n", 0o755)
	link := filepath.Join(dir, "proj", "node_modules", ".bin", "pkg")
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../@s/pkg/dist/index.js", link); err != nil {
		t.Fatal(err)
	}
	env := []string{"PATH=/usr/bin:/bin"}
	for _, c := range []struct {
		name     string
		path     string
		args     []string
		want     []string
		wantNone []string
	}{
		{"venv python", filepath.Join(venv, "bin", "python"), []string{"python", script, state, dir}, []string{venv, filepath.Join(dir, "app")}, nil},
		{"npm bin", link, []string{"pkg", state}, []string{filepath.Join(dir, "proj", "node_modules")}, []string{state, dir}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, paths, err := codePaths(c.path, c.args, env)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range c.want {
				if !slices.Contains(paths, w) {
					t.Errorf("%s not granted: %v", w, paths)
				}
			}
			for _, n := range append(c.wantNone, state) {
				if slices.Contains(paths, n) {
					t.Errorf("%s granted: %v", n, paths)
				}
			}
		})
	}
}

// The init binds what the daemon checked and nothing else: a grant turned
// into a link since, or replaced by another directory, is refused; a
// writable grant holding a protected path is refused outright.
func TestGrantsAreWhatWasChecked(t *testing.T) {
	dir := outsideTmp(t)
	grant := filepath.Join(dir, "work")
	if err := os.MkdirAll(grant, 0o755); err != nil {
		t.Fatal(err)
	}
	spec := Spec{Path: "/bin/sh", Args: []string{"sh"}, Env: []string{"PATH=/usr/bin:/bin"}, Mounts: []Mount{{Path: grant}}}
	is, err := plan(spec)
	if err != nil {
		t.Fatal(err)
	}
	b := is.Binds[len(is.Binds)-1]
	if b.Path != grant {
		t.Fatalf("bind %+v", b)
	}
	fd, err := openGrant(b)
	if err != nil {
		t.Fatalf("the grant as checked: %v", err)
	}
	_ = os.NewFile(uintptr(fd), "grant").Close()

	// Replaced by another directory of the same name.
	if err := os.Rename(grant, grant+".old"); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(grant, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := openGrant(b); err == nil {
		t.Error("a directory put in the grant's place was opened")
	}
	// Replaced by a link to somewhere else.
	if err := os.Remove(grant); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc", grant); err != nil {
		t.Fatal(err)
	}
	if _, err := openGrant(b); err == nil {
		t.Error("a link put in the grant's place was followed")
	}

	// A writable grant that holds a protected path.
	data := filepath.Join(dir, "rw", "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	spec.Mounts = []Mount{{Path: filepath.Dir(data), Write: true}}
	spec.Protect = []string{data}
	if _, err := plan(spec); err == nil {
		t.Error("a writable grant holding the data dir was accepted")
	}
	spec.Mounts[0].Write = false
	if _, err := plan(spec); err != nil {
		t.Errorf("a read-only grant holding it (covered inside): %v", err)
	}
}
