// Command gen builds the release archives, their checksum file and the krew
// manifest for kubectl-selfhost. It uses only the standard library, so a clean
// machine needs nothing but Go (no zip, no sha256sum, no envsubst).
//
//	gen archive  -o dist/NAME.tar.gz|.zip [-mtime UNIX] SRC=NAME_IN_ARCHIVE...
//	gen checksums -o dist/sha256sum ARCHIVE...
//	gen manifest -template krew/selfhost.yaml.tmpl -dist dist -version V -platforms "linux/amd64 ..." -o krew/selfhost.yaml
//
// The Makefile targets `dist` and `krew-manifest` drive it.
package main

import (
	"archive/tar"
	"archive/zip"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"text/template"
	"time"
)

const (
	binName     = "kubectl-selfhost"
	releaseBase = "https://github.com/kubectl-selfhost/kubectl-selfhost/releases/download"
)

func main() {
	if len(os.Args) < 2 {
		fail(errors.New("usage: gen archive|checksums|manifest [flags]"))
	}
	var err error
	switch os.Args[1] {
	case "archive":
		err = cmdArchive(os.Args[2:])
	case "checksums":
		err = cmdChecksums(os.Args[2:])
	case "manifest":
		err = cmdManifest(os.Args[2:])
	default:
		err = fmt.Errorf("unknown subcommand %q (want archive, checksums or manifest)", os.Args[1])
	}
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "krew/gen:", err)
	os.Exit(1)
}

// ArchiveName is the file name of the release archive for one platform.
func ArchiveName(version, goos, goarch string) string {
	ext := ".tar.gz"
	if goos == "windows" {
		ext = ".zip"
	}
	return fmt.Sprintf("%s_%s_%s_%s%s", binName, version, goos, goarch, ext)
}

// ---- archive ----------------------------------------------------------------

type entry struct {
	src, name string
	mode      os.FileMode
}

func cmdArchive(args []string) error {
	fs := flag.NewFlagSet("archive", flag.ContinueOnError)
	out := fs.String("o", "", "archive to write; .tar.gz or .zip")
	mtime := fs.Int64("mtime", 0, "modification time (unix seconds) stamped on every entry, for reproducible archives")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || fs.NArg() == 0 {
		return errors.New("archive: -o and at least one SRC=NAME are required")
	}
	var entries []entry
	for _, a := range fs.Args() {
		src, name, ok := strings.Cut(a, "=")
		if !ok || src == "" || name == "" || strings.Contains(name, "..") || filepath.IsAbs(name) {
			return fmt.Errorf("archive: bad entry %q, want SRC=NAME with a relative NAME", a)
		}
		fi, err := os.Stat(src)
		if err != nil {
			return fmt.Errorf("archive: %w", err)
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("archive: %s is not a regular file", src)
		}
		// Normalise modes: only "executable or not" survives, so the umask of
		// the machine that built the release does not leak into it.
		mode := os.FileMode(0o644)
		if fi.Mode()&0o111 != 0 {
			mode = 0o755
		}
		entries = append(entries, entry{src: src, name: filepath.ToSlash(name), mode: mode})
	}
	slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(a.name, b.name) })
	for i := 1; i < len(entries); i++ {
		if entries[i].name == entries[i-1].name {
			return fmt.Errorf("archive: %q listed twice", entries[i].name)
		}
	}
	mt := time.Unix(*mtime, 0).UTC()

	var buf bytes.Buffer
	var err error
	switch {
	case strings.HasSuffix(*out, ".tar.gz"):
		err = writeTarGz(&buf, entries, mt)
	case strings.HasSuffix(*out, ".zip"):
		err = writeZip(&buf, entries, mt)
	default:
		err = fmt.Errorf("archive: %s: want a .tar.gz or .zip name", *out)
	}
	if err != nil {
		return err
	}
	return writeFileAtomic(*out, buf.Bytes(), 0o644)
}

func writeTarGz(w io.Writer, entries []entry, mt time.Time) error {
	gz, err := gzip.NewWriterLevel(w, gzip.BestCompression)
	if err != nil {
		return err
	}
	// gzip.Writer leaves Name empty and ModTime zero unless set: nothing
	// machine- or time-dependent goes into the gzip header.
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		data, err := os.ReadFile(e.src)
		if err != nil {
			return err
		}
		hdr := &tar.Header{
			Typeflag: tar.TypeReg,
			Name:     e.name,
			Mode:     int64(e.mode),
			Size:     int64(len(data)),
			ModTime:  mt,
			Format:   tar.FormatPAX,
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := tw.Write(data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}

func writeZip(w io.Writer, entries []entry, mt time.Time) error {
	zw := zip.NewWriter(w)
	for _, e := range entries {
		data, err := os.ReadFile(e.src)
		if err != nil {
			return err
		}
		hdr := &zip.FileHeader{Name: e.name, Method: zip.Deflate, Modified: mt}
		hdr.SetMode(e.mode)
		f, err := zw.CreateHeader(hdr)
		if err != nil {
			return err
		}
		if _, err := f.Write(data); err != nil {
			return err
		}
	}
	return zw.Close()
}

// ---- checksums --------------------------------------------------------------

func cmdChecksums(args []string) error {
	fs := flag.NewFlagSet("checksums", flag.ContinueOnError)
	out := fs.String("o", "", "checksum file to write, in `sha256sum` format (check it with: cd dist && sha256sum -c sha256sum)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || fs.NArg() == 0 {
		return errors.New("checksums: -o and at least one file are required")
	}
	files := slices.Clone(fs.Args())
	slices.SortFunc(files, func(a, b string) int { return strings.Compare(filepath.Base(a), filepath.Base(b)) })
	var b strings.Builder
	for _, f := range files {
		sum, err := sha256File(f)
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s  %s\n", sum, filepath.Base(f))
	}
	return writeFileAtomic(*out, []byte(b.String()), 0o644)
}

func sha256File(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// readChecksums parses a `sha256sum` file into name -> hex digest.
func readChecksums(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sums := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		sum, name, ok := strings.Cut(line, "  ")
		if !ok {
			return nil, fmt.Errorf("%s: bad line %q", path, line)
		}
		sums[strings.TrimPrefix(name, "*")] = sum
	}
	return sums, sc.Err()
}

// ---- manifest ---------------------------------------------------------------

// Platform is one spec.platforms[] item of the krew manifest.
type Platform struct {
	OS, Arch   string
	Archive    string // file name in dist/ and on the release page
	URI        string
	Sha256     string
	Bin        string // the binary's name inside the archive
	Completion string // the completion helper's name inside the archive
}

// Manifest is what the template sees.
type Manifest struct {
	Version   string // spec.version: semver with a leading "v", as krew requires
	Tag       string // the release tag the URIs point at (VERSION from git describe)
	Platforms []Platform
}

// semverRe is what krew accepts as spec.version (a "v" and a strict semver).
var semverRe = regexp.MustCompile(`^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$`)

// KrewVersion maps VERSION (git describe output) to a version krew accepts.
// A tagged build (v1.2.3, v1.2.3-4-gabcdef0-dirty) is already semver; an
// untagged one (abcdef0, dev) becomes v0.0.0-dev+<it>, and says so.
func KrewVersion(v string) (string, bool) {
	if semverRe.MatchString(v) {
		return v, true
	}
	meta := regexp.MustCompile(`[^0-9A-Za-z-]+`).ReplaceAllString(v, "-")
	meta = strings.Trim(meta, "-")
	if meta == "" || meta == "dev" {
		return "v0.0.0-dev", false
	}
	return "v0.0.0-dev+" + meta, false
}

func cmdManifest(args []string) error {
	fs := flag.NewFlagSet("manifest", flag.ContinueOnError)
	tmplPath := fs.String("template", "krew/selfhost.yaml.tmpl", "manifest template (text/template)")
	dist := fs.String("dist", "dist", "directory holding the archives and sha256sum")
	version := fs.String("version", "", "VERSION the archives were built with (git describe)")
	platforms := fs.String("platforms", "", "space-separated os/arch list; every one must have its archive")
	out := fs.String("o", "krew/selfhost.yaml", "manifest to write")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *version == "" || *platforms == "" {
		return errors.New("manifest: -version and -platforms are required")
	}
	sums, err := readChecksums(filepath.Join(*dist, "sha256sum"))
	if err != nil {
		return fmt.Errorf("manifest: %w (run `make dist` first)", err)
	}
	kv, tagged := KrewVersion(*version)
	if !tagged {
		fmt.Fprintf(os.Stderr, "krew/gen: VERSION %q is not a semver tag; the manifest says version %s and its URIs point at a release %q that only exists once tagged\n", *version, kv, *version)
	}
	m := Manifest{Version: kv, Tag: *version}
	for _, p := range strings.Fields(*platforms) {
		goos, goarch, ok := strings.Cut(p, "/")
		if !ok {
			return fmt.Errorf("manifest: bad platform %q, want os/arch", p)
		}
		name := ArchiveName(*version, goos, goarch)
		sum, ok := sums[name]
		if !ok {
			return fmt.Errorf("manifest: %s is not in %s/sha256sum (run `make dist`)", name, *dist)
		}
		// The checksum file is only an index: the digest that goes into the
		// manifest is the one of the bytes on disk, and they must agree.
		real, err := sha256File(filepath.Join(*dist, name))
		if err != nil {
			return fmt.Errorf("manifest: %w", err)
		}
		if real != sum {
			return fmt.Errorf("manifest: %s: sha256 on disk %s differs from %s/sha256sum (%s); rerun `make dist`", name, real, *dist, sum)
		}
		pl := Platform{
			OS: goos, Arch: goarch, Archive: name, Sha256: real,
			URI:        releaseBase + "/" + *version + "/" + name,
			Bin:        binName,
			Completion: "kubectl_complete-selfhost",
		}
		if goos == "windows" {
			pl.Bin += ".exe"
			pl.Completion += ".cmd"
		}
		m.Platforms = append(m.Platforms, pl)
	}
	tmpl, err := template.New(filepath.Base(*tmplPath)).Option("missingkey=error").ParseFiles(*tmplPath)
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, m); err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	return writeFileAtomic(*out, buf.Bytes(), 0o644)
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
