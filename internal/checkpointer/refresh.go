package checkpointer

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"time"

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
			if src.Kind == checkpoint.TokenKind {
				token, err := r.keptToken(ctx, vc, src)
				if err != nil {
					return err
				}
				data[src.Kind+"/"+src.Name] = map[string][]byte{checkpoint.TokenKey: token}
				continue
			}
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

// keptToken is the token a copy keeps: the one on disk while more than half
// its life is left, else a new one from a TokenRequest.
func (r *Reconciler) keptToken(ctx context.Context, vc checkpoint.VolumeCopy, src checkpoint.CopySource) ([]byte, error) {
	now := r.Clock.Now()
	if old, err := os.ReadFile(filepath.Join(vc.Dir, src.Items[0].Path)); err == nil {
		if exp, ok := tokenExpiry(old); ok && exp.Sub(now) > r.TokenLifetime/2 {
			return old, nil
		}
	}
	token, err := r.API.ServiceAccountToken(ctx, src.Name, src.Audience, r.TokenLifetime)
	if err != nil {
		return nil, err
	}
	exp, _ := tokenExpiry(token)
	r.Log.Info("renewed a checkpoint's service-account token", "account", src.Name, "volume", vc.Volume, "expires", exp.UTC())
	return token, nil
}

// tokenExpiry reads the exp claim of a JWT without verifying it: the API
// server verifies it; this only decides when to ask for the next one.
func tokenExpiry(token []byte) (time.Time, bool) {
	parts := strings.Split(strings.TrimSpace(string(token)), ".")
	if len(parts) != 3 {
		return time.Time{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}, false
	}
	var claims struct {
		Exp int64 `json:"exp"`
	}
	if json.Unmarshal(payload, &claims) != nil || claims.Exp == 0 {
		return time.Time{}, false
	}
	return time.Unix(claims.Exp, 0), true
}
