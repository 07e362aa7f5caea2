package checkpointer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/kubectl-selfhost/kubectl-selfhost/plugin/checkpoint"
)

// Disk layout of the checkpoints on a node. The kubelet runs what is in
// ManifestDir; InactiveDir holds every checkpoint, active or not; SecretDir
// holds the volume copies.
type Disk struct {
	ManifestDir string // e.g. /etc/kubernetes/manifests
	InactiveDir string // e.g. /etc/kubernetes/inactive-manifests
	SecretDir   string // e.g. /etc/kubernetes/checkpoint-secrets
}

// OnDisk is what the disk holds for one parent.
type OnDisk struct {
	Pod      *corev1.Pod // the checkpoint, from the inactive copy if there is one
	Inactive bool        // InactiveDir has it
	Active   bool        // ManifestDir has it
	Copies   bool        // SecretDir has volume copies for it
}

// Temporary names start with a dot: the kubelet ignores dot files in its
// manifest directory, so it never reads a half-written manifest.
const (
	tempPrefix    = ".tmp-"
	dataLink      = "..data"
	dataLinkTemp  = "..data_tmp"
	versionPrefix = "..v-"
)

// afterTempWrite runs once a temporary file is complete and before it is
// renamed. Tests use it to kill a writer at the worst moment.
var afterTempWrite = func(string) {}

func manifestName(namespace, name string) string { return namespace + "-" + name + ".json" }

// Key names a checkpoint: namespace/parent.
func Key(namespace, name string) string { return namespace + "/" + name }

// List reads the checkpoints on disk, keyed by Key. Files that are not
// checkpoints, such as kubeadm's own static pods, are ignored.
func (d Disk) List() (map[string]*OnDisk, error) {
	out := map[string]*OnDisk{}
	for _, dir := range []struct {
		path   string
		active bool
	}{{d.InactiveDir, false}, {d.ManifestDir, true}} {
		entries, err := os.ReadDir(dir.path)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("cannot read checkpoint directory %s: %w", dir.path, err)
		}
		for _, e := range entries {
			if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
				continue
			}
			pod, err := readPod(filepath.Join(dir.path, e.Name()))
			if err != nil || checkpoint.CheckpointOf(pod) == "" {
				continue // not ours; a broken checkpoint is rewritten from the API
			}
			k := Key(pod.Namespace, checkpoint.CheckpointOf(pod))
			od := out[k]
			if od == nil {
				od = &OnDisk{Pod: pod}
				out[k] = od
			}
			if dir.active {
				od.Active = true
			} else {
				od.Inactive, od.Pod = true, pod
			}
		}
	}
	namespaces, _ := os.ReadDir(d.SecretDir)
	for _, ns := range namespaces {
		pods, _ := os.ReadDir(filepath.Join(d.SecretDir, ns.Name()))
		for _, p := range pods {
			if !p.IsDir() {
				continue
			}
			k := Key(ns.Name(), p.Name())
			if out[k] == nil {
				out[k] = &OnDisk{}
			}
			out[k].Copies = true
		}
	}
	return out, nil
}

func readPod(path string) (*corev1.Pod, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pod := &corev1.Pod{}
	if err := yaml.Unmarshal(b, pod); err != nil {
		return nil, err
	}
	return pod, nil
}

// EncodePod is the byte form of a checkpoint on disk.
func EncodePod(pod *corev1.Pod) ([]byte, error) {
	b, err := json.MarshalIndent(pod, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("cannot encode checkpoint %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return append(b, '\n'), nil
}

// WriteInactive stores a checkpoint in InactiveDir and, if the checkpoint is
// active, refreshes its copy in ManifestDir. It reports whether anything changed.
func (d Disk) WriteInactive(pod *corev1.Pod) (bool, error) {
	b, err := EncodePod(pod)
	if err != nil {
		return false, err
	}
	if err := os.MkdirAll(d.InactiveDir, 0o700); err != nil {
		return false, fmt.Errorf("cannot create %s: %w", d.InactiveDir, err)
	}
	name := manifestName(pod.Namespace, pod.Name)
	changed, err := writeIfChanged(filepath.Join(d.InactiveDir, name), b)
	if err != nil || !changed {
		return changed, err
	}
	if _, err := os.Stat(filepath.Join(d.ManifestDir, name)); err == nil {
		_, err = writeIfChanged(filepath.Join(d.ManifestDir, name), b)
	}
	return true, err
}

// Activate puts the checkpoint into the kubelet's manifest directory.
func (d Disk) Activate(namespace, name string) error {
	file := manifestName(namespace, name)
	b, err := os.ReadFile(filepath.Join(d.InactiveDir, file))
	if err != nil {
		return fmt.Errorf("cannot activate checkpoint %s/%s without its inactive copy: %w", namespace, name, err)
	}
	_, err = writeIfChanged(filepath.Join(d.ManifestDir, file), b)
	return err
}

// Deactivate takes the checkpoint out of the kubelet's manifest directory.
func (d Disk) Deactivate(namespace, name string) error {
	err := os.Remove(filepath.Join(d.ManifestDir, manifestName(namespace, name)))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("cannot deactivate checkpoint %s/%s: %w", namespace, name, err)
	}
	return nil
}

// Remove deletes everything of a checkpoint. The active manifest goes last:
// for the checkpointer's own checkpoint, that is the moment it gets stopped.
func (d Disk) Remove(namespace, name string) error {
	err := os.Remove(filepath.Join(d.InactiveDir, manifestName(namespace, name)))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("cannot remove checkpoint %s/%s: %w", namespace, name, err)
	}
	if err := os.RemoveAll(filepath.Join(d.SecretDir, namespace, name)); err != nil {
		return fmt.Errorf("cannot remove volume copies of %s/%s: %w", namespace, name, err)
	}
	os.Remove(filepath.Join(d.SecretDir, namespace)) // only succeeds once empty
	return d.Deactivate(namespace, name)
}

// CleanTemp removes what an interrupted write left behind: temporary
// manifests, and volume versions that no ..data link points to.
func (d Disk) CleanTemp() (int, error) {
	removed := 0
	var errs []error
	for _, dir := range []string{d.ManifestDir, d.InactiveDir} {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), tempPrefix) {
				if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
					errs = append(errs, err)
				} else {
					removed++
				}
			}
		}
	}
	err := filepath.WalkDir(d.SecretDir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || !e.IsDir() {
			return nil
		}
		if strings.HasPrefix(e.Name(), versionPrefix) {
			return fs.SkipDir // versions are judged by their parent
		}
		n, err := cleanVolumeDir(path)
		removed += n
		if err != nil {
			errs = append(errs, err)
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	return removed, errors.Join(errs...)
}

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
		if (strings.HasPrefix(n, versionPrefix) && n != current) || n == dataLinkTemp || strings.HasPrefix(n, tempPrefix) {
			if err := os.RemoveAll(filepath.Join(dir, n)); err != nil {
				errs = append(errs, err)
			} else {
				removed++
			}
		}
	}
	return removed, errors.Join(errs...)
}

// writeIfChanged writes data to path atomically unless path already holds it.
func writeIfChanged(path string, data []byte) (bool, error) {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return false, nil
	}
	return true, writeFileAtomic(path, data, 0o600, 0, 0)
}

// writeFileAtomic writes a temporary file in the same directory, syncs it and
// renames it over path. A crash leaves either the old file or the new one,
// plus at worst a temporary file that CleanTemp removes.
func writeFileAtomic(path string, data []byte, mode fs.FileMode, uid, gid int64) error {
	f, err := os.CreateTemp(filepath.Dir(path), tempPrefix+filepath.Base(path)+"-")
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
	afterTempWrite(tmp)
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("cannot write %s: %w", path, err)
	}
	syncDir(filepath.Dir(path))
	return nil
}

// syncDir makes a rename durable. Best effort: some file systems refuse it.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
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
		if err := writeFileAtomic(target, f.Data, f.Mode, uid, gid); err != nil {
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
	afterTempWrite(version)
	if err := replaceSymlink(dir, dataLink, filepath.Base(version)); err != nil {
		return false, err
	}
	syncDir(dir)
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
