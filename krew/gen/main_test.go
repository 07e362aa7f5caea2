package main

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestKrewVersion(t *testing.T) {
	for in, want := range map[string]string{
		"v0.1.0":                  "v0.1.0",
		"v1.2.3-4-gabcdef0-dirty": "v1.2.3-4-gabcdef0-dirty",
		"05aad15":                 "v0.0.0-dev+05aad15",
		"05aad15-dirty":           "v0.0.0-dev+05aad15-dirty",
		"dev":                     "v0.0.0-dev",
		"v1.2":                    "v0.0.0-dev+v1-2",
	} {
		got, tagged := KrewVersion(in)
		if got != want {
			t.Errorf("KrewVersion(%q) = %q, want %q", in, got, want)
		}
		if tagged != (got == in) {
			t.Errorf("KrewVersion(%q) tagged = %v", in, tagged)
		}
	}
}

// Two archives of the same inputs are byte-identical, whatever the files'
// mtimes and the order they are listed in; entries come out sorted with
// normalised modes and the stamped time.
func TestArchiveReproducible(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	lic := filepath.Join(dir, "LICENSE")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(lic, []byte("license"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, ext := range []string{".tar.gz", ".zip"} {
		a, b := filepath.Join(dir, "a"+ext), filepath.Join(dir, "b"+ext)
		if err := cmdArchive([]string{"-o", a, "-mtime", "1700000000", bin + "=kubectl-selfhost", lic + "=LICENSE"}); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(bin, time.Now(), time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if err := cmdArchive([]string{"-o", b, "-mtime", "1700000000", lic + "=LICENSE", bin + "=kubectl-selfhost"}); err != nil {
			t.Fatal(err)
		}
		da, _ := os.ReadFile(a)
		db, _ := os.ReadFile(b)
		if !bytes.Equal(da, db) {
			t.Fatalf("%s: two builds differ", ext)
		}
		got := listArchive(t, a)
		want := "LICENSE -rw-r--r-- 1700000000|kubectl-selfhost -rwxr-xr-x 1700000000"
		if got != want {
			t.Errorf("%s entries = %q, want %q", ext, got, want)
		}
	}
}

func listArchive(t *testing.T, path string) string {
	t.Helper()
	var out []string
	if strings.HasSuffix(path, ".zip") {
		zr, err := zip.OpenReader(path)
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		for _, f := range zr.File {
			out = append(out, f.Name+" "+f.Mode().String()+" "+strconv.FormatInt(f.Modified.Unix(), 10))
		}
		return strings.Join(out, "|")
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, h.Name+" "+h.FileInfo().Mode().String()+" "+strconv.FormatInt(h.ModTime.Unix(), 10))
	}
	return strings.Join(out, "|")
}

// The manifest carries the digest of the bytes on disk and refuses a stale
// checksum file.
func TestManifestUsesRealDigest(t *testing.T) {
	dir := t.TempDir()
	name := ArchiveName("v0.1.0", "linux", "amd64")
	if err := os.WriteFile(filepath.Join(dir, name), []byte("archive"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := cmdChecksums([]string{"-o", filepath.Join(dir, "sha256sum"), filepath.Join(dir, name)}); err != nil {
		t.Fatal(err)
	}
	tmpl := filepath.Join(dir, "m.tmpl")
	if err := os.WriteFile(tmpl, []byte("{{.Version}}{{range .Platforms}} {{.URI}} {{.Sha256}} {{.Bin}}{{end}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "selfhost.yaml")
	args := []string{"-template", tmpl, "-dist", dir, "-version", "v0.1.0", "-platforms", "linux/amd64", "-o", out}
	if err := cmdManifest(args); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(out)
	sum, err := sha256File(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(got), " "+sum+" ") || !strings.HasPrefix(string(got), "v0.1.0 https://github.com/kubectl-selfhost/kubectl-selfhost/releases/download/v0.1.0/"+name) {
		t.Errorf("manifest = %q", got)
	}
	// A rebuilt archive with a stale sha256sum is refused.
	if err := os.WriteFile(filepath.Join(dir, name), []byte("rebuilt"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := cmdManifest(args); err == nil || !strings.Contains(err.Error(), "differs") {
		t.Errorf("stale sha256sum: err = %v, want a 'differs' error", err)
	}
	// A missing platform is refused.
	args[7] = "linux/amd64 darwin/arm64"
	if err := cmdManifest(args); err == nil {
		t.Error("missing darwin/arm64 archive: no error")
	}
}
