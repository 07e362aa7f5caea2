package checkpointer

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/atomicfile"
	"github.com/kubectl-selfhost/kubectl-selfhost/plugin/checkpoint"
)

// Names in a volume copy: the kubelet's atomic writer's.
const (
	dataLink      = "..data"
	dataLinkTemp  = "..data_tmp"
	versionPrefix = "..v-"
)

// writeIfChanged writes data to path atomically unless path already holds it.
func writeIfChanged(path string, data []byte) (bool, error) {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return false, nil
	}
	return true, atomicfile.Write(path, data, 0o600, 0, 0)
}

// WriteVolume makes dir hold exactly files, the way the kubelet's atomic
// writer does: the files live in a version directory, ..data points at the
// current version, and each top-level name is a link through ..data. The
// switch to a new version is one rename, so a reader (or a crash) sees the
// old set or the new set, never a mix. Directories are 0700.
func (d Disk) WriteVolume(dir string, files map[string]checkpoint.File, uid, gid int64) (bool, error) {
	if err := mkdirPrivate(dir, uid, gid); err != nil {
		return false, err
	}
	if sameVolume(dir, files) {
		return false, nil
	}
	version, err := os.MkdirTemp(dir, versionPrefix)
	if err != nil {
		return false, fmt.Errorf("cannot write volume copy %s: %w", dir, err)
	}
	if err := chownIf(version, uid, gid); err != nil {
		return false, err
	}
	tops := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		f := files[name]
		target := filepath.Join(version, filepath.FromSlash(name))
		if err := mkdirPrivate(filepath.Dir(target), uid, gid); err != nil {
			return false, err
		}
		if err := atomicfile.Write(target, f.Data, f.Mode, uid, gid); err != nil {
			return false, err
		}
		tops[strings.SplitN(name, "/", 2)[0]] = true
	}
	// Links first: until ..data moves they point at the old version, where
	// a new name is simply absent.
	for top := range tops {
		want := filepath.Join(dataLink, top)
		if got, err := os.Readlink(filepath.Join(dir, top)); err == nil && got == want {
			continue
		}
		if err := replaceSymlink(dir, top, want); err != nil {
			return false, err
		}
	}
	atomicfile.AfterTempWrite(version)
	if err := replaceSymlink(dir, dataLink, filepath.Base(version)); err != nil {
		return false, err
	}
	atomicfile.SyncDir(dir)
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		n := e.Name()
		if n == dataLink || n == filepath.Base(version) || tops[n] {
			continue
		}
		os.RemoveAll(filepath.Join(dir, n)) // stale names and old versions
	}
	return true, nil
}

func replaceSymlink(dir, name, target string) error {
	tmp := filepath.Join(dir, dataLinkTemp)
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("cannot link %s in %s: %w", name, dir, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("cannot link %s in %s: %w", name, dir, err)
	}
	return nil
}

// sameVolume reports whether dir's current version holds exactly files.
func sameVolume(dir string, files map[string]checkpoint.File) bool {
	current, err := os.Readlink(filepath.Join(dir, dataLink))
	if err != nil {
		return false
	}
	root := filepath.Join(dir, current)
	seen := 0
	err = filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		f, ok := files[filepath.ToSlash(rel)]
		info, ierr := e.Info()
		if !ok || ierr != nil || info.Mode().Perm() != f.Mode {
			return fs.ErrInvalid
		}
		b, rerr := os.ReadFile(path)
		if rerr != nil || !bytes.Equal(b, f.Data) {
			return fs.ErrInvalid
		}
		seen++
		return nil
	})
	if err != nil || seen != len(files) {
		return false
	}
	for name := range files {
		top := strings.SplitN(name, "/", 2)[0]
		if got, err := os.Readlink(filepath.Join(dir, top)); err != nil || got != filepath.Join(dataLink, top) {
			return false
		}
	}
	return true
}

// cleanVolumeDir removes what an interrupted WriteVolume left in dir:
// versions that ..data does not point to and temporary names.
func cleanVolumeDir(dir string) (int, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, nil
	}
	current, _ := os.Readlink(filepath.Join(dir, dataLink))
	removed := 0
	var errs []error
	for _, e := range entries {
		n := e.Name()
		if (strings.HasPrefix(n, versionPrefix) && n != current) || n == dataLinkTemp || strings.HasPrefix(n, atomicfile.TempPrefix) {
			if err := os.RemoveAll(filepath.Join(dir, n)); err != nil {
				errs = append(errs, err)
			} else {
				removed++
			}
		}
	}
	return removed, errors.Join(errs...)
}

func mkdirPrivate(dir string, uid, gid int64) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("cannot create %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("cannot restrict %s: %w", dir, err)
	}
	return chownIf(dir, uid, gid)
}

func chownIf(path string, uid, gid int64) error {
	if uid == 0 && gid == 0 {
		return nil
	}
	if err := os.Chown(path, int(uid), int(gid)); err != nil {
		return fmt.Errorf("cannot give %s to %d:%d: %w", path, uid, gid, err)
	}
	return nil
}
