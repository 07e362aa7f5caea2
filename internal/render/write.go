package render

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// ErrAssetDirNotEmpty refuses to mix a new render with old keys.
var ErrAssetDirNotEmpty = errors.New("asset directory is not empty")

// Write puts assets under dir. A non-empty dir is refused unless force is set.
// The assets are written beside dir and renamed into place, so a failure
// leaves dir as it was: never half-rendered, never a mix of two renders.
// With force, everything dir held before is replaced.
func Write(dir string, assets []Asset, force bool) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("cannot read asset directory %s: %w", dir, err)
	case len(entries) > 0 && !force:
		return fmt.Errorf("%w: %s (use --force to overwrite)", ErrAssetDirNotEmpty, dir)
	}
	staged, err := stage(dir, assets)
	if err != nil {
		return err
	}
	if err := swapIn(staged, dir); err != nil {
		os.RemoveAll(staged)
		return err
	}
	return nil
}

// stage writes the assets into a new directory beside dir.
func stage(dir string, assets []Asset) (string, error) {
	parent := filepath.Dir(filepath.Clean(dir))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", fmt.Errorf("cannot create %s: %w", parent, err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".tmp-")
	if err != nil {
		return "", fmt.Errorf("cannot write under %s: %w", parent, err)
	}
	if err := writeAll(tmp, assets); err != nil {
		os.RemoveAll(tmp)
		return "", err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		os.RemoveAll(tmp)
		return "", err
	}
	return tmp, nil
}

// swapIn renames staged to dir. An existing dir is first moved aside, and
// moved back if the rename fails; it is removed once staged is in place.
func swapIn(staged, dir string) error {
	if _, err := os.Lstat(dir); err != nil {
		if err := os.Rename(staged, dir); err != nil {
			return fmt.Errorf("cannot move assets into %s: %w", dir, err)
		}
		return nil
	}
	aside, err := os.MkdirTemp(filepath.Dir(filepath.Clean(dir)), "."+filepath.Base(dir)+".old-")
	if err != nil {
		return fmt.Errorf("cannot move %s aside: %w", dir, err)
	}
	old := filepath.Join(aside, filepath.Base(dir))
	if err := os.Rename(dir, old); err != nil {
		os.Remove(aside)
		return fmt.Errorf("cannot move %s aside: %w", dir, err)
	}
	if err := os.Rename(staged, dir); err != nil {
		if back := os.Rename(old, dir); back != nil {
			return fmt.Errorf("cannot move assets into %s (%w); the previous assets are in %s", dir, err, old)
		}
		os.Remove(aside)
		return fmt.Errorf("cannot move assets into %s: %w", dir, err)
	}
	return os.RemoveAll(aside)
}

func writeAll(dir string, assets []Asset) error {
	for _, a := range assets {
		p := filepath.Join(dir, filepath.FromSlash(a.Name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("cannot create %s: %w", filepath.Dir(p), err)
		}
		if err := os.WriteFile(p, a.Data, a.Mode); err != nil {
			return fmt.Errorf("cannot write %s: %w", p, err)
		}
		// WriteFile's mode passes through the umask; set it exactly.
		if err := os.Chmod(p, a.Mode); err != nil {
			return err
		}
	}
	return nil
}
