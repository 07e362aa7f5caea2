package checkpointer

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/atomicfile"
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

func manifestName(namespace, name string) string { return namespace + "-" + name + ".json" }

// validKey reports whether a namespace and a pod name read from disk are
// names the API could have given, so joining them to a directory stays in it.
func validKey(namespace, name string) bool {
	return len(validation.IsDNS1123Label(namespace)) == 0 && len(validation.IsDNS1123Subdomain(name)) == 0
}

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
			if !validKey(pod.Namespace, checkpoint.CheckpointOf(pod)) {
				continue // its names would lead a path out of our directories
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
			if !p.IsDir() || !validKey(ns.Name(), p.Name()) {
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
			if strings.HasPrefix(e.Name(), atomicfile.TempPrefix) {
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
