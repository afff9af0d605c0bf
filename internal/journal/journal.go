// Package journal records the creations crishim has begun and not yet
// finished, one small file per object, so that a crishim killed in the
// middle of RunPodSandbox or CreateContainer can find and undo what it had
// made by then (a netns, an IP address, a snapshot, a containerd
// container) when it starts again.
//
// Entries are written atomically (temporary file and rename) but not
// fsynced: they must survive a crash of crishim, not of the machine, whose
// reboot takes network namespaces and tasks with it anyway.
package journal

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Journal is one directory of in-progress entries.
type Journal struct {
	dir string
}

// New returns the journal kept in dir; the directory is made on first write.
func New(dir string) *Journal { return &Journal{dir: dir} }

// validID keeps entry names inside the directory.
func validID(id string) error {
	if id == "" || strings.ContainsAny(id, "/\x00") || id == "." || id == ".." || strings.HasPrefix(id, ".") {
		return fmt.Errorf("journal entry id %q is not a plain name", id)
	}
	return nil
}

// Write records (or replaces) entry id with v encoded as JSON.
func (j *Journal) Write(id string, v any) error {
	if err := validID(id); err != nil {
		return err
	}
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode journal entry %s: %w", id, err)
	}
	if err := os.MkdirAll(j.dir, 0o700); err != nil {
		return fmt.Errorf("create journal directory: %w", err)
	}
	tmp, err := os.CreateTemp(j.dir, ".tmp-"+id+"-")
	if err != nil {
		return fmt.Errorf("write journal entry %s: %w", id, err)
	}
	_, werr := tmp.Write(data)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write journal entry %s: %w", id, err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(j.dir, id)); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write journal entry %s: %w", id, err)
	}
	return nil
}

// Remove deletes entry id; absent is fine.
func (j *Journal) Remove(id string) error {
	if err := validID(id); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(j.dir, id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove journal entry %s: %w", id, err)
	}
	return nil
}

// Entries lists the ids of all entries, dropping temporary files a crash
// left half written.
func (j *Journal) Entries() ([]string, error) {
	list, err := os.ReadDir(j.dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read journal directory: %w", err)
	}
	var ids []string
	for _, e := range list {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			os.Remove(filepath.Join(j.dir, e.Name()))
			continue
		}
		if e.Type().IsRegular() {
			ids = append(ids, e.Name())
		}
	}
	return ids, nil
}

// Read decodes entry id into v.
func (j *Journal) Read(id string, v any) error {
	if err := validID(id); err != nil {
		return err
	}
	data, err := os.ReadFile(filepath.Join(j.dir, id))
	if err != nil {
		return fmt.Errorf("read journal entry %s: %w", id, err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decode journal entry %s: %w", id, err)
	}
	return nil
}
