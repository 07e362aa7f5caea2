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
// Into a new dir the assets are written beside it and renamed into place, so
// an interrupted write leaves no half-rendered directory behind.
func Write(dir string, assets []Asset, force bool) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return writeFresh(dir, assets)
	case err != nil:
		return fmt.Errorf("cannot read asset directory %s: %w", dir, err)
	case len(entries) > 0 && !force:
		return fmt.Errorf("%w: %s (use --force to overwrite)", ErrAssetDirNotEmpty, dir)
	}
	return writeAll(dir, assets)
}

func writeFresh(dir string, assets []Asset) error {
	parent := filepath.Dir(filepath.Clean(dir))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("cannot create %s: %w", parent, err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".tmp-")
	if err != nil {
		return fmt.Errorf("cannot write under %s: %w", parent, err)
	}
	if err := writeAll(tmp, assets); err != nil {
		os.RemoveAll(tmp)
		return err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		os.RemoveAll(tmp)
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("cannot move assets into %s: %w", dir, err)
	}
	return nil
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
		// WriteFile keeps the mode of an existing file (--force); set it.
		if err := os.Chmod(p, a.Mode); err != nil {
			return err
		}
	}
	return nil
}
