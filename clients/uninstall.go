package clients

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// UninstallFileResult is what an uninstall did to one client file.
type UninstallFileResult struct {
	Path     string   `json:"path"`
	Restored []string `json:"restored"` // entries put back as they were before the install
	Removed  []string `json:"removed"`  // entries rugwatch had added (the gateway's)
	// Kept are entries changed since the install, left as they are, with
	// why; Backup is then the copy of the file before the first install,
	// kept for the user to compare.
	Kept   []string `json:"kept,omitempty"`
	Backup string   `json:"backup,omitempty"`
}

// Uninstall undoes, in each of the client's files, what installs recorded
// there and nothing else: an entry rugwatch rewrote goes back to what it
// was, one it added goes, one it removed comes back. An entry the user
// changed or added since is left as it is.
func Uninstall(home, project, clientKey string) ([]UninstallFileResult, error) {
	client, ok := Names[clientKey]
	if !ok {
		return nil, fmt.Errorf("unknown client %q", clientKey)
	}
	var out []UninstallFileResult
	for _, src := range clientSources(home, project) {
		if src.Client != client {
			continue
		}
		rec, err := readRecord(src.Path + RecordSuffix)
		if errors.Is(err, fs.ErrNotExist) {
			if _, err := os.Stat(src.Path + BackupSuffix); err == nil {
				return out, fmt.Errorf("%s has a backup (%s) but no record of what the install changed (%s): compare the two and restore by hand", src.Path, BackupSuffix, RecordSuffix)
			}
			continue
		}
		if err != nil {
			return out, fmt.Errorf("%s: %w", src.Path+RecordSuffix, err)
		}
		fr, err := undo(src.Path, rec)
		if err != nil {
			return out, err
		}
		out = append(out, fr)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no %s config file has a record of an install (%s next to it)", client, RecordSuffix)
	}
	return out, nil
}

// undo reverts one file's record: what rugwatch wrote first (newest
// first), then the entries it removed, in their order.
func undo(path string, rec record) (UninstallFileResult, error) {
	fr := UninstallFileResult{Path: path, Restored: []string{}, Removed: []string{}}
	orig, err := os.ReadFile(path)
	if err != nil {
		return fr, fmt.Errorf("reading %s: %w", path, err)
	}
	doc := orig
	var order []entryRecord
	for i := len(rec.Entries) - 1; i >= 0; i-- {
		if rec.Entries[i].Wrote != nil {
			order = append(order, rec.Entries[i])
		}
	}
	for _, e := range rec.Entries {
		if e.Wrote == nil {
			order = append(order, e)
		}
	}
	for _, e := range order {
		name := entryName(e.Container, e.Key)
		cur, present, err := memberValue(doc, e.Container, e.Key)
		if err != nil {
			return fr, fmt.Errorf("%s: %s: %w", path, name, err)
		}
		switch {
		case e.Wrote == nil && e.Original == nil:
			continue
		case e.Wrote == nil && present:
			fr.Kept = append(fr.Kept, name+": an entry of that name was added since the install; the one the gateway replaced is not put back")
			continue
		case e.Wrote == nil:
			doc, err = addMember(doc, e.Container, e.Key, []byte(*e.Original))
			fr.Restored = append(fr.Restored, name)
		case !present:
			fr.Kept = append(fr.Kept, name+": removed since the install; not put back")
			continue
		case !sameJSON(cur, []byte(*e.Wrote)):
			fr.Kept = append(fr.Kept, name+": changed since the install; left as it is")
			continue
		case e.Original == nil:
			doc, err = deleteMember(doc, e.Container, e.Key)
			fr.Removed = append(fr.Removed, name)
		default:
			doc, err = setMember(doc, e.Container, e.Key, []byte(*e.Original))
			fr.Restored = append(fr.Restored, name)
		}
		if err != nil {
			return fr, fmt.Errorf("%s: %s: %w", path, name, err)
		}
	}
	if string(doc) != string(orig) {
		if err := writeAtomic(path, doc); err != nil {
			return fr, fmt.Errorf("writing %s: %w", path, err)
		}
	}
	if err := os.Remove(path + RecordSuffix); err != nil {
		return fr, fmt.Errorf("removing %s: %w", path+RecordSuffix, err)
	}
	backup := path + BackupSuffix
	if len(fr.Kept) > 0 {
		if _, err := os.Stat(backup); err == nil {
			fr.Backup = backup
		}
		return fr, nil
	}
	if err := os.Remove(backup); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fr, fmt.Errorf("removing %s: %w", backup, err)
	}
	return fr, nil
}
