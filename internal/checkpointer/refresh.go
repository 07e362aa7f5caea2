package checkpointer

import (
	"bytes"
	"context"

	corev1 "k8s.io/api/core/v1"

	"github.com/kubectl-selfhost/kubectl-selfhost/plugin/checkpoint"
)

// refresh writes the checkpoint of a Ready parent: volume copies first, so
// that a manifest never names a copy that is not there, then the manifest.
// Copies are re-read when the manifest changes or every RefreshEvery.
func (r *Reconciler) refresh(ctx context.Context, snap *snapshot, key string) error {
	od := snap.onDisk[key]
	cp, copies, err := checkpoint.Sanitize(snap.byKey[key], r.SecretDir)
	if err != nil {
		return err
	}
	manifestChanged := od == nil || !od.Inactive || !samePod(cp, od.Pod)
	if manifestChanged || snap.now.Sub(r.copied[key]) >= r.RefreshEvery {
		if err := r.writeCopies(ctx, copies); err != nil {
			return err
		}
		r.copied[key] = snap.now
	}
	if changed, err := r.Store.WriteInactive(cp); err != nil {
		return err
	} else if changed {
		r.Log.Info("checkpoint written", "checkpoint", key)
	}
	return nil
}

// writeCopies reads each copy's secrets and configMaps from the API and
// writes the copy to disk.
func (r *Reconciler) writeCopies(ctx context.Context, copies []checkpoint.VolumeCopy) error {
	for _, vc := range copies {
		data := map[string]map[string][]byte{}
		for _, src := range vc.Sources {
			d, found, err := r.API.VolumeData(ctx, src.Kind, src.Name)
			if err != nil {
				return err
			}
			if found {
				data[src.Kind+"/"+src.Name] = d
			}
		}
		files, err := checkpoint.Project(vc, data)
		if err != nil {
			return err
		}
		if _, err := r.Store.WriteVolume(vc.Dir, files, vc.UID, vc.GID); err != nil {
			return err
		}
	}
	return nil
}

func samePod(a, b *corev1.Pod) bool {
	if a == nil || b == nil {
		return false
	}
	x, err1 := EncodePod(a)
	y, err2 := EncodePod(b)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}
