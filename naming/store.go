package naming

import (
	"cmp"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/ftsl-go/ftsl/internal/ftslerr"
)

// This file is the server's data file: every binding and the version counter, written whole on
// every change. A naming service holds few names that change rarely (a server moving), so a
// whole-file write per change costs little and leaves nothing to compact or replay.

// dataFormat is the data file's format version; a file of another one is refused.
const dataFormat = 1

// maxDataFileBytes bounds what loading reads: MaxNames is capped so that a full server's file
// fits well within it.
const maxDataFileBytes = 256 << 20

// dataFile is the data file's content.
type dataFile struct {
	Format int `json:"format"`
	// Index is the version counter: the version of the last write, bind or unbind. It is kept
	// because the binding that had it may be gone, and versions must never go backwards.
	Index    uint64    `json:"index"`
	Bindings []Binding `json:"bindings"`
}

// loadData reads the data file at path. A file that does not exist is an empty state; one that
// cannot be read, or breaks a rule, is an error naming the file and what is wrong.
func loadData(path string, maxNames int) (dataFile, error) {
	bad := func(format string, args ...any) (dataFile, error) {
		return dataFile{}, ftslerr.Errorf("ftsl: naming: data file %s: "+format, append([]any{path}, args...)...)
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		// The directory must exist, or the first write would fail long after startup.
		if _, err := os.Stat(filepath.Dir(path)); err != nil {
			return bad("%v", err)
		}
		return dataFile{Format: dataFormat}, nil
	}
	if err != nil {
		return bad("%v", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxDataFileBytes+1))
	if err != nil {
		return bad("%v", err)
	}
	if len(b) > maxDataFileBytes {
		return bad("larger than %d bytes", maxDataFileBytes)
	}
	var d dataFile
	if err := json.Unmarshal(b, &d); err != nil {
		return bad("%v", err)
	}
	if d.Format != dataFormat {
		return bad("format %d, want %d", d.Format, dataFormat)
	}
	if len(d.Bindings) > maxNames {
		return bad("holds %d names, above MaxNames %d", len(d.Bindings), maxNames)
	}
	seen := make(map[string]bool, len(d.Bindings))
	for i, b := range d.Bindings {
		if err := validName(b.Name); err != nil {
			return bad("binding %d: %v", i, err)
		}
		if err := validAddr(b.Addr); err != nil {
			return bad("binding %q: %v", b.Name, err)
		}
		if b.Version == 0 || b.Version > d.Index {
			return bad("binding %q: version %d, want 1 to the index %d", b.Name, b.Version, d.Index)
		}
		if seen[b.Name] {
			return bad("name %q appears twice", b.Name)
		}
		seen[b.Name] = true
	}
	return d, nil
}

// saveData writes d to path atomically: a reader (or a restart after a crash) finds the old
// file or the new one, whole, never a mix. The bytes go to a temporary file in the same
// directory (a rename does not cross file systems), which is synced before the rename, and the
// directory is synced after it so the rename itself survives a crash.
//
// An error before the rename leaves the old file in place; the caller must then not apply the
// change. Once the rename is done the new state is the file's, so a failing directory sync
// is only reported through dirErr: the caller applies the change and logs it.
func saveData(path string, d dataFile) (dirErr, err error) {
	slices.SortFunc(d.Bindings, func(a, b Binding) int { return cmp.Compare(a.Name, b.Name) })
	b, err := json.MarshalIndent(d, "", "\t")
	if err != nil {
		return nil, err
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*") // CreateTemp makes it 0600
	if err != nil {
		return nil, err
	}
	done := false
	defer func() {
		if !done {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return nil, err
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		return nil, err
	}
	if err := tmp.Sync(); err != nil {
		return nil, err
	}
	if err := tmp.Close(); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return nil, err
	}
	done = true
	return syncDir(dir), nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
