package nodecreds

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Restore writes what differs, owner-only and atomically, leaves the rest
// alone, and logs file names only.
func TestRestoreWritesTheSecretBackOwnerOnly(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "etcd"), 0o755); err != nil {
		t.Fatal(err)
	}
	keyPEM := []byte("-----BEGIN EC PRIVATE KEY-----\nnew\n-----END EC PRIVATE KEY-----\n")
	os.WriteFile(filepath.Join(dir, "ca.crt"), []byte("same"), 0o644)
	os.WriteFile(filepath.Join(dir, "apiserver.key"), []byte("old"), 0o644)
	before, _ := os.Stat(filepath.Join(dir, "ca.crt"))
	store := &fakeStore{stored: map[string][]byte{"ca.crt": []byte("same"), "apiserver.key": keyPEM, "etcd-ca.crt": []byte("etcd ca")}}
	c := Config{PKIDir: dir, Namespace: "kube-system", Secret: "kube-apiserver", Plan: Plan{Items: []Item{
		{Key: "ca.crt", Path: "ca.crt"}, {Key: "apiserver.key", Path: "apiserver.key"}, {Key: "etcd-ca.crt", Path: "etcd/ca.crt"},
	}}}
	var log bytes.Buffer
	if err := Restore(context.Background(), c, store, slog.New(slog.NewTextHandler(&log, nil))); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{"apiserver.key": string(keyPEM), "etcd/ca.crt": "etcd ca", "ca.crt": "same"} {
		got, err := os.ReadFile(filepath.Join(dir, path))
		if err != nil || string(got) != want {
			t.Errorf("%s holds %q (%v), want %q", path, got, err, want)
		}
	}
	for _, path := range []string{"apiserver.key", "etcd/ca.crt"} {
		if fi, _ := os.Stat(filepath.Join(dir, path)); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", path, fi.Mode().Perm())
		}
	}
	if after, _ := os.Stat(filepath.Join(dir, "ca.crt")); !after.ModTime().Equal(before.ModTime()) || after.Mode().Perm() != 0o644 {
		t.Error("an unchanged file was rewritten")
	}
	if holdsKeyMaterial(log.String()) || !strings.Contains(log.String(), "apiserver.key") || !strings.Contains(log.String(), "unchanged=1") {
		t.Errorf("log: %s", log.String())
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".tmp-*"))
	if len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}

	// A key the Secret lacks is named, and nothing is written for it.
	c.Plan.Items = append(c.Plan.Items, Item{Key: "sa.key", Path: "sa.key"})
	err := Restore(context.Background(), c, store, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "has no item sa.key") {
		t.Errorf("a missing item: %v", err)
	}
	store.stored = nil
	if err := Restore(context.Background(), c, store, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("no Secret: %v", err)
	}
}
