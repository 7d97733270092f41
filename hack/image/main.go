// Command image builds the container images of veil-apiserver,
// veil-syncer and the out-of-process providers veil-provider-vault and
// veil-provider-aws (each linking its one backend) without a container
// engine (`make images`):
//
//	go run ./hack/image [-out out/images] [-arch amd64]
//
// For each binary it writes, into -out:
//
//   - NAME.tar: one image, tagged ghcr.io/veil-dev/NAME:v$(cat VERSION),
//     as a tar that is both an OCI image layout (oci-layout, index.json,
//     blobs/) and a `docker save` archive (manifest.json naming the same
//     blobs), so `ctr image import`, `kind load image-archive`,
//     `k3d image import`, `docker load` and `podman load` all accept it;
//   - NAME.spdx.json: its SBOM (SPDX 2.3), from the build information Go
//     embeds in the binary (`go version -m`): every module linked in, with
//     its version and go.sum hash, and the CA bundle. The same file is in
//     the image as /sbom.spdx.json.
//
// The image is the static binary (CGO_ENABLED=0) on an empty base, with
// /etc/passwd and /etc/group naming the user 65532 (nonroot) it runs as,
// an empty /tmp, and CA certificates; no shell, no package manager.
//
// The same commit gives the same image digest, on any machine with the
// same Go toolchain: the binary is built with -trimpath, -buildvcs=false
// and an empty build ID, its version and commit are stamped with -X, every
// file and the image config carry the commit's time (SOURCE_DATE_EPOCH if
// set), and tar headers carry no owner names or other host details.
//
// The CA bundle is ca-certificates.crt in this directory, pinned in the
// repository, not the build machine's /etc/ssl/certs: that file is whatever
// the machine's administrator added to it (build machines often trust a
// proxy's CA; this one does), and it changes with the machine's packages,
// which would change the digest. The pinned bundle is Mozilla's roots as
// Debian's ca-certificates 20230311+deb12u1 ships them, the files of
// /usr/share/ca-certificates/mozilla concatenated in name order:
//
//	for f in $(ls /usr/share/ca-certificates/mozilla/*.crt | LC_ALL=C sort); do cat "$f"; done
//
// Update it the same way from a newer package, and say which in the commit.
package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

const (
	module     = "github.com/veil-dev/veil"
	source     = "https://github.com/veil-dev/veil"
	uid        = 65532
	sbomPath   = "sbom.spdx.json"
	binDir     = "usr/local/bin"
	caBundle   = "etc/ssl/certs/ca-certificates.crt"
	caPackage  = "ca-certificates"
	caVersion  = "20230311+deb12u1"
	defaultCAs = "hack/image/ca-certificates.crt"
)

// binaries are the images to build: the image (and binary) name and the
// package it is built from.
var binaries = []struct{ name, pkg string }{
	{"veil-apiserver", "./cmd/apiserver"},
	{"veil-syncer", "./cmd/syncer"},
	// One image per backend, not cmd/veil-provider (every backend in one
	// binary): a provider's image carries its own backend's dependencies
	// alone (docs/threat-model.md, 002 T5).
	{"veil-provider-vault", "./cmd/veil-provider-vault"},
	{"veil-provider-aws", "./cmd/veil-provider-aws"},
}

type options struct {
	root     string // the repository
	out      string // where the tars and SBOMs go
	arch     string // GOARCH: amd64 or arm64
	registry string // image names are registry/NAME
	caFile   string // the CA bundle put in the images
	goCmd    string
	log      io.Writer
}

// result describes one image written.
type result struct {
	Name       string
	Ref        string // ghcr.io/veil-dev/veil-apiserver:v0.1.0
	Digest     v1.Hash
	Tar        string
	SBOM       string
	TarSize    int64
	BinarySize int64
}

func main() {
	o := options{goCmd: "go", log: os.Stderr}
	flag.StringVar(&o.root, "root", ".", "the repository's root")
	flag.StringVar(&o.out, "out", "out/images", "directory for the image tars and SBOMs")
	flag.StringVar(&o.arch, "arch", "amd64", "GOARCH of the images: amd64 or arm64")
	flag.StringVar(&o.registry, "registry", "ghcr.io/veil-dev", "registry and path the images are named under")
	flag.StringVar(&o.caFile, "ca-bundle", "", "CA certificates to include (default: the pinned "+defaultCAs+")")
	flag.Parse()
	if g := os.Getenv("GO"); g != "" {
		o.goCmd = g
	}
	results, err := build(context.Background(), o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
	for _, r := range results {
		fmt.Printf("%s %s\n  %s (%.1f MiB; binary %.1f MiB)\n  %s\n", r.Ref, r.Digest, r.Tar,
			float64(r.TarSize)/(1<<20), float64(r.BinarySize)/(1<<20), r.SBOM)
	}
}

// stamp is what identifies the tree being built.
type stamp struct {
	version string    // v0.1.0
	commit  string    // full hash, or "" outside a git checkout
	short   string    // abc1234[-dirty], or "unknown"
	time    time.Time // SOURCE_DATE_EPOCH, else the commit's time, else 0
}

func readStamp(root string) (stamp, error) {
	var s stamp
	v, err := os.ReadFile(filepath.Join(root, "VERSION"))
	if err != nil {
		return s, err
	}
	ver := strings.TrimSpace(string(v))
	if !regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$`).MatchString(ver) {
		return s, fmt.Errorf("VERSION %q is not a semantic version like 0.1.0", ver)
	}
	s.version = "v" + ver
	git := func(args ...string) (string, error) {
		out, err := exec.Command("git", append([]string{"-C", root}, args...)...).Output()
		return strings.TrimSpace(string(out)), err
	}
	s.short = "unknown"
	if c, err := git("rev-parse", "HEAD"); err == nil {
		s.commit = c
		s.short = c[:7]
		// Untracked files count: a new .go file changes the build.
		if st, err := git("status", "--porcelain"); err != nil {
			return s, err
		} else if st != "" {
			s.short += "-dirty"
		}
	}
	if e := os.Getenv("SOURCE_DATE_EPOCH"); e != "" {
		sec, err := strconv.ParseInt(e, 10, 64)
		if err != nil {
			return s, fmt.Errorf("SOURCE_DATE_EPOCH: %v", err)
		}
		s.time = time.Unix(sec, 0).UTC()
	} else if ct, err := git("log", "-1", "--format=%ct", "HEAD"); err == nil && s.commit != "" {
		sec, err := strconv.ParseInt(ct, 10, 64)
		if err != nil {
			return s, fmt.Errorf("commit time %q: %v", ct, err)
		}
		s.time = time.Unix(sec, 0).UTC()
	} else {
		s.time = time.Unix(0, 0).UTC()
	}
	return s, nil
}

func build(ctx context.Context, o options) ([]result, error) {
	if o.arch != "amd64" && o.arch != "arm64" {
		return nil, fmt.Errorf("-arch %q: amd64 or arm64", o.arch)
	}
	if o.log == nil {
		o.log = io.Discard
	}
	if o.caFile == "" {
		o.caFile = filepath.Join(o.root, defaultCAs)
	}
	st, err := readStamp(o.root)
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "veil-image-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)

	// One go build for all: the packages they share compile once and the
	// links run side by side.
	ldflags := fmt.Sprintf("-s -w -buildid= -X %[1]s/pkg/version.Version=%[2]s -X %[1]s/pkg/version.Commit=%[3]s",
		module, st.version, st.short)
	args := []string{"build", "-trimpath", "-buildvcs=false", "-ldflags", ldflags, "-o", tmp + string(os.PathSeparator)}
	for _, b := range binaries {
		args = append(args, b.pkg)
	}
	cmd := exec.CommandContext(ctx, o.goCmd, args...)
	cmd.Dir = o.root
	// Everything that changes the output is set here, not taken from the
	// caller's environment.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+o.arch,
		"GOAMD64=v1", "GOARM64=v8.0", "GOFLAGS=", "GOEXPERIMENT=")
	cmd.Stdout, cmd.Stderr = o.log, o.log
	fmt.Fprintf(o.log, "image: go %s\n", strings.Join(args, " "))
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go build: %v", err)
	}

	ca, err := os.ReadFile(o.caFile)
	if err != nil {
		return nil, err
	}
	if !bytes.Contains(ca, []byte("-----BEGIN CERTIFICATE-----")) {
		return nil, fmt.Errorf("%s holds no PEM certificate", o.caFile)
	}
	base, err := layer(st.time, baseFiles(ca))
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return nil, err
	}
	var results []result
	for _, b := range binaries {
		bin, err := os.ReadFile(filepath.Join(tmp, filepath.Base(b.pkg)))
		if err != nil {
			return nil, err
		}
		r, err := buildImage(o, st, b.name, bin, ca, base)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", b.name, err)
		}
		results = append(results, r)
	}
	return results, nil
}

func buildImage(o options, st stamp, name string, bin, ca []byte, base v1.Layer) (result, error) {
	r := result{Name: name, Ref: fmt.Sprintf("%s/%s:%s", o.registry, name, st.version), BinarySize: int64(len(bin))}
	bi, err := buildinfo.Read(bytes.NewReader(bin))
	if err != nil {
		return r, fmt.Errorf("reading the build information: %v", err)
	}
	sbom, err := spdx(name, st, bi, bin, ca)
	if err != nil {
		return r, err
	}
	app, err := layer(st.time, []file{
		{name: "usr/", mode: 0o755, dir: true},
		{name: "usr/local/", mode: 0o755, dir: true},
		{name: binDir + "/", mode: 0o755, dir: true},
		{name: binDir + "/" + name, mode: 0o755, data: bin},
		{name: sbomPath, mode: 0o644, data: sbom},
	})
	if err != nil {
		return r, err
	}
	created := v1.Time{Time: st.time}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img,
		mutate.Addendum{Layer: base, MediaType: types.OCILayer, History: v1.History{
			Created: created, CreatedBy: "hack/image: /etc/passwd, /etc/group, /tmp, " + caPackage + " " + caVersion}},
		mutate.Addendum{Layer: app, MediaType: types.OCILayer, History: v1.History{
			Created: created, CreatedBy: "hack/image: /" + binDir + "/" + name + ", /" + sbomPath}},
	)
	if err != nil {
		return r, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return r, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Created = "linux", o.arch, created
	if o.arch == "arm64" {
		cf.Variant = "v8"
	}
	labels := map[string]string{
		"org.opencontainers.image.title":    name,
		"org.opencontainers.image.version":  st.version,
		"org.opencontainers.image.revision": st.commit,
		"org.opencontainers.image.source":   source,
		"org.opencontainers.image.licenses": "Apache-2.0",
		"org.opencontainers.image.created":  st.time.Format(time.RFC3339),
	}
	if st.commit == "" {
		delete(labels, "org.opencontainers.image.revision")
	}
	cf.Config = v1.Config{
		Entrypoint: []string{"/" + binDir + "/" + name},
		User:       fmt.Sprintf("%d:%d", uid, uid),
		WorkingDir: "/",
		Env:        []string{"PATH=/" + binDir},
		Labels:     labels,
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return r, err
	}
	img = mutate.Annotations(img, labels).(v1.Image)
	if r.Digest, err = img.Digest(); err != nil {
		return r, err
	}
	r.Tar = filepath.Join(o.out, name+".tar")
	r.SBOM = filepath.Join(o.out, name+".spdx.json")
	if err := os.WriteFile(r.SBOM, sbom, 0o644); err != nil {
		return r, err
	}
	if err := writeArchive(r.Tar, r.Ref, st.version, o.arch, img); err != nil {
		return r, err
	}
	fi, err := os.Stat(r.Tar)
	if err != nil {
		return r, err
	}
	r.TarSize = fi.Size()
	return r, nil
}

// file is one entry of a layer.
type file struct {
	name     string
	mode     int64
	uid, gid int
	dir      bool
	data     []byte
}

func baseFiles(ca []byte) []file {
	return []file{
		{name: "etc/", mode: 0o755, dir: true},
		{name: "etc/group", mode: 0o644, data: []byte("root:x:0:\nnonroot:x:65532:\n")},
		{name: "etc/passwd", mode: 0o644, data: []byte(
			"root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{name: "etc/ssl/", mode: 0o755, dir: true},
		{name: "etc/ssl/certs/", mode: 0o755, dir: true},
		{name: caBundle, mode: 0o644, data: ca},
		{name: "home/", mode: 0o755, dir: true},
		{name: "home/nonroot/", mode: 0o700, dir: true, uid: uid, gid: uid},
		{name: "tmp/", mode: 0o1777, dir: true},
	}
}

// layer makes a gzip-compressed layer of files, in the order given, with
// nothing in a header but name, mode, owner ids, size and mtime.
func layer(mtime time.Time, files []file) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: f.mode, Uid: f.uid, Gid: f.gid, ModTime: mtime, Format: tar.FormatPAX}
		if f.dir {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(types.OCILayer))
}

// writeArchive writes img as an OCI image layout whose index names it ref,
// plus a docker-save manifest.json over the same blobs, in one tar.
func writeArchive(path, ref, tag, arch string, img v1.Image) error {
	type blob struct {
		digest v1.Hash
		data   []byte
	}
	var blobs []blob
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	var layerPaths []string
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return err
		}
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return err
		}
		blobs = append(blobs, blob{d, data})
		layerPaths = append(layerPaths, "blobs/sha256/"+d.Hex)
	}
	cfgName, err := img.ConfigName()
	if err != nil {
		return err
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	blobs = append(blobs, blob{cfgName, cfg})
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	manifest, err := img.RawManifest()
	if err != nil {
		return err
	}
	blobs = append(blobs, blob{digest, manifest})

	platform := &v1.Platform{OS: "linux", Architecture: arch}
	if arch == "arm64" {
		platform.Variant = "v8"
	}
	index, err := json.Marshal(v1.IndexManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIImageIndex,
		Manifests: []v1.Descriptor{{
			MediaType: types.OCIManifestSchema1,
			Size:      int64(len(manifest)),
			Digest:    digest,
			Platform:  platform,
			Annotations: map[string]string{
				// containerd (ctr image import, kind, k3d) names the image
				// from the first; the OCI spec's is the tag alone.
				"io.containerd.image.name":          ref,
				"org.opencontainers.image.ref.name": tag,
			},
		}},
	})
	if err != nil {
		return err
	}
	dockerManifest, err := json.Marshal([]struct {
		Config   string
		RepoTags []string
		Layers   []string
	}{{Config: "blobs/sha256/" + cfgName.Hex, RepoTags: []string{ref}, Layers: layerPaths}})
	if err != nil {
		return err
	}

	f, err := os.Create(path)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	epoch := time.Unix(0, 0)
	add := func(name string, data []byte) error {
		if strings.HasSuffix(name, "/") {
			return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX})
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: epoch, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	err = errors.Join(
		add("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)),
		add("index.json", index),
		add("manifest.json", dockerManifest),
		add("blobs/", nil),
		add("blobs/sha256/", nil),
	)
	seen := map[v1.Hash]bool{}
	for _, b := range blobs {
		if err != nil || seen[b.digest] {
			continue
		}
		seen[b.digest] = true
		err = add("blobs/sha256/"+b.digest.Hex, b.data)
	}
	if err == nil {
		err = tw.Close()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// SPDX 2.3, only the fields used here.
type spdxDoc struct {
	SPDXVersion       string             `json:"spdxVersion"`
	DataLicense       string             `json:"dataLicense"`
	SPDXID            string             `json:"SPDXID"`
	Name              string             `json:"name"`
	DocumentNamespace string             `json:"documentNamespace"`
	CreationInfo      spdxCreationInfo   `json:"creationInfo"`
	Comment           string             `json:"comment,omitempty"`
	Packages          []spdxPackage      `json:"packages"`
	Relationships     []spdxRelationship `json:"relationships"`
}

type spdxCreationInfo struct {
	Created  string   `json:"created"`
	Creators []string `json:"creators"`
}

type spdxPackage struct {
	Name                  string         `json:"name"`
	SPDXID                string         `json:"SPDXID"`
	VersionInfo           string         `json:"versionInfo,omitempty"`
	Supplier              string         `json:"supplier,omitempty"`
	DownloadLocation      string         `json:"downloadLocation"`
	FilesAnalyzed         bool           `json:"filesAnalyzed"`
	Checksums             []spdxChecksum `json:"checksums,omitempty"`
	LicenseConcluded      string         `json:"licenseConcluded"`
	LicenseDeclared       string         `json:"licenseDeclared"`
	CopyrightText         string         `json:"copyrightText"`
	PrimaryPackagePurpose string         `json:"primaryPackagePurpose,omitempty"`
	ExternalRefs          []spdxRef      `json:"externalRefs,omitempty"`
	Comment               string         `json:"comment,omitempty"`
}

type spdxChecksum struct {
	Algorithm string `json:"algorithm"`
	Value     string `json:"checksumValue"`
}

type spdxRef struct {
	Category string `json:"referenceCategory"`
	Type     string `json:"referenceType"`
	Locator  string `json:"referenceLocator"`
}

type spdxRelationship struct {
	Element string `json:"spdxElementId"`
	Type    string `json:"relationshipType"`
	Related string `json:"relatedSpdxElement"`
}

var spdxIDUnsafe = regexp.MustCompile(`[^A-Za-z0-9.-]+`)

func spdxID(s string) string { return "SPDXRef-" + spdxIDUnsafe.ReplaceAllString(s, "-") }

// spdx describes the binary (from the build information Go embedded in it:
// the main module, every module linked in with its version and go.sum
// hash, the Go toolchain, the build settings) and the CA bundle beside it.
// The go.sum hash (h1:, a hash of the module's file tree) is not a file
// checksum SPDX knows, so it is in each package's comment and purl.
func spdx(name string, st stamp, bi *buildinfo.BuildInfo, bin, ca []byte) ([]byte, error) {
	binSum := sha256.Sum256(bin)
	caSum := sha256.Sum256(ca)
	download := "NOASSERTION"
	if st.commit != "" {
		download = "git+" + source + ".git@" + st.commit
	}
	var settings []string
	for _, s := range bi.Settings {
		settings = append(settings, s.Key+"="+s.Value)
	}
	main := spdxPackage{
		Name: name, SPDXID: spdxID("Package-" + name), VersionInfo: st.version,
		Supplier:         "Organization: The Veil Authors",
		DownloadLocation: download,
		Checksums:        []spdxChecksum{{"SHA256", hex.EncodeToString(binSum[:])}},
		LicenseConcluded: "Apache-2.0", LicenseDeclared: "Apache-2.0", CopyrightText: "NOASSERTION",
		PrimaryPackagePurpose: "APPLICATION",
		ExternalRefs: []spdxRef{{"PACKAGE-MANAGER", "purl",
			fmt.Sprintf("pkg:golang/%s@%s?type=module#%s", bi.Main.Path, st.version, strings.TrimPrefix(bi.Path, bi.Main.Path+"/"))}},
		Comment: fmt.Sprintf("/%s/%s, package %s, built with %s: %s", binDir, name, bi.Path, bi.GoVersion, strings.Join(settings, " ")),
	}
	stdlib := spdxPackage{
		Name: "stdlib", SPDXID: spdxID("Package-go-stdlib"), VersionInfo: bi.GoVersion,
		DownloadLocation: "https://go.dev/dl/", LicenseConcluded: "NOASSERTION", LicenseDeclared: "BSD-3-Clause",
		CopyrightText: "NOASSERTION", PrimaryPackagePurpose: "LIBRARY",
		ExternalRefs: []spdxRef{{"PACKAGE-MANAGER", "purl", "pkg:golang/stdlib@" + bi.GoVersion}},
	}
	certs := spdxPackage{
		Name: caPackage, SPDXID: spdxID("Package-" + caPackage), VersionInfo: caVersion,
		Supplier:         "Organization: Debian",
		DownloadLocation: "https://snapshot.debian.org/package/ca-certificates/" + caVersion + "/",
		Checksums:        []spdxChecksum{{"SHA256", hex.EncodeToString(caSum[:])}},
		LicenseConcluded: "NOASSERTION", LicenseDeclared: "MPL-2.0", CopyrightText: "NOASSERTION",
		PrimaryPackagePurpose: "FILE",
		ExternalRefs: []spdxRef{{"PACKAGE-MANAGER", "purl",
			"pkg:deb/debian/ca-certificates@" + caVersion + "?arch=all"}},
		Comment: "/" + caBundle + ": Mozilla's CA roots, the files of /usr/share/ca-certificates/mozilla of this package concatenated",
	}
	doc := spdxDoc{
		SPDXVersion: "SPDX-2.3", DataLicense: "CC0-1.0", SPDXID: "SPDXRef-DOCUMENT",
		Name:              name + "-" + st.version,
		DocumentNamespace: fmt.Sprintf("%s/sbom/%s/%s/sha256-%x", source, name, st.version, binSum),
		CreationInfo: spdxCreationInfo{
			Created:  st.time.Format(time.RFC3339),
			Creators: []string{"Tool: veil-hack-image-" + st.version, "Organization: The Veil Authors"},
		},
		Comment:  fmt.Sprintf("The image %s: its binary, the modules linked into it, and its CA bundle.", name),
		Packages: []spdxPackage{main, stdlib, certs},
		Relationships: []spdxRelationship{
			{"SPDXRef-DOCUMENT", "DESCRIBES", main.SPDXID},
			{"SPDXRef-DOCUMENT", "DESCRIBES", certs.SPDXID},
			{main.SPDXID, "STATIC_LINK", stdlib.SPDXID},
		},
	}
	deps := append([]*debug.Module(nil), bi.Deps...)
	sort.Slice(deps, func(i, j int) bool { return deps[i].Path < deps[j].Path })
	for _, d := range deps {
		m, comment := d, ""
		if d.Replace != nil {
			m, comment = d.Replace, fmt.Sprintf("replaces %s %s; ", d.Path, d.Version)
		}
		p := spdxPackage{
			Name: m.Path, SPDXID: spdxID("Package-go-" + m.Path + "-" + m.Version), VersionInfo: m.Version,
			DownloadLocation: "NOASSERTION", LicenseConcluded: "NOASSERTION", LicenseDeclared: "NOASSERTION",
			CopyrightText: "NOASSERTION", PrimaryPackagePurpose: "LIBRARY",
			ExternalRefs: []spdxRef{{"PACKAGE-MANAGER", "purl", "pkg:golang/" + m.Path + "@" + m.Version + "?type=module"}},
		}
		if m.Sum != "" {
			comment += "go.sum " + m.Sum
		}
		p.Comment = strings.TrimSuffix(comment, "; ")
		doc.Packages = append(doc.Packages, p)
		doc.Relationships = append(doc.Relationships, spdxRelationship{main.SPDXID, "STATIC_LINK", p.SPDXID})
	}
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}
