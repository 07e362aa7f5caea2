// Package atomicfile writes a file so that a reader, or a crash, sees the
// old content or the new, never half of either.
package atomicfile

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// TempPrefix starts every temporary name. It starts with a dot: the kubelet
// ignores dot files in its manifest directory, so it never reads a
// half-written manifest.
const TempPrefix = ".tmp-"

// AfterTempWrite runs once a temporary file is complete and before it is
// renamed. Crash tests use it to kill a writer at the worst moment.
var AfterTempWrite = func(string) {}

// Write writes a temporary file in path's directory with mode (and owner,
// unless uid and gid are 0), syncs it and renames it over path. A crash
// leaves either the old file or the new one, plus at worst a temporary
// file named TempPrefix+….
func Write(path string, data []byte, mode fs.FileMode, uid, gid int64) error {
	f, err := os.CreateTemp(filepath.Dir(path), TempPrefix+filepath.Base(path)+"-")
	if err != nil {
		return fmt.Errorf("cannot write %s: %w", path, err)
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("cannot write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Chmod(mode); err != nil {
		return fail(err)
	}
	if uid != 0 || gid != 0 {
		if err := f.Chown(int(uid), int(gid)); err != nil {
			return fail(err)
		}
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		return fail(err)
	}
	AfterTempWrite(tmp)
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("cannot write %s: %w", path, err)
	}
	SyncDir(filepath.Dir(path))
	return nil
}

// SyncDir makes a rename durable. Best effort: some file systems refuse it.
func SyncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
