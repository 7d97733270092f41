package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestImages builds every image twice from this tree and checks that the
// two builds are byte for byte the same, and what is in them. It compiles
// everything with -trimpath, so the first run on a machine takes minutes
// (`make test-images`).
func TestImages(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skipf("the images are Linux images; this test runs their binary, so it runs on Linux only (not %s)", runtime.GOOS)
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	// Build for this machine's architecture, so the binary in the image
	// runs here.
	arch := runtime.GOARCH
	if arch != "amd64" && arch != "arm64" {
		t.Fatalf("images are built for amd64 and arm64, not %s", arch)
	}
	goCmd := "go"
	if g := os.Getenv("GO"); g != "" {
		goCmd = g
	}
	ver, err := os.ReadFile(filepath.Join(root, "VERSION"))
	if err != nil {
		t.Fatal(err)
	}
	version := "v" + strings.TrimSpace(string(ver))

	before, err := readStamp(root)
	if err != nil {
		t.Fatal(err)
	}
	var builds [2][]result
	for i := range builds {
		o := options{root: root, out: t.TempDir(), arch: arch, registry: "ghcr.io/veil-dev", goCmd: goCmd, log: logWriter{t}}
		builds[i], err = build(context.Background(), o)
		if err != nil {
			t.Fatalf("build %d: %v", i+1, err)
		}
	}
	if after, err := readStamp(root); err != nil || after != before {
		t.Fatalf("the tree changed while the images were built (%+v, then %+v, %v): run the test again", before, after, err)
	}
	var names []string
	for _, r := range builds[0] {
		names = append(names, r.Name)
	}
	if want := "veil-apiserver veil-syncer veil-provider-vault veil-provider-aws"; strings.Join(names, " ") != want {
		t.Errorf("built %q, want %s", names, want)
	}
	if len(builds[0]) != len(binaries) || len(builds[1]) != len(binaries) {
		t.Fatalf("built %d and %d images, want %d each", len(builds[0]), len(builds[1]), len(binaries))
	}
	for i, r := range builds[0] {
		r2 := builds[1][i]
		t.Logf("%s %s: %d bytes, binary %d bytes", r.Ref, r.Digest, r.TarSize, r.BinarySize)
		if r.Digest != r2.Digest {
			t.Errorf("%s: two builds of one tree gave two digests, %s and %s", r.Name, r.Digest, r2.Digest)
		}
		for _, f := range [][2]string{{r.Tar, r2.Tar}, {r.SBOM, r2.SBOM}} {
			if a, b := fileSum(t, f[0]), fileSum(t, f[1]); a != b {
				t.Errorf("%s and %s differ: sha256 %s and %s", f[0], f[1], a, b)
			}
		}
		if want := "ghcr.io/veil-dev/" + r.Name + ":" + version; r.Ref != want {
			t.Errorf("image named %s, want %s", r.Ref, want)
		}
	}
	for _, r := range builds[0] {
		t.Run(r.Name, func(t *testing.T) { checkImage(t, root, goCmd, version, arch, r) })
	}
}

func fileSum(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

func checkImage(t *testing.T, root, goCmd, version, arch string, r result) {
	// The OCI layout in the tar: one image, named for containerd, valid
	// (every blob matches its digest and size).
	dir := t.TempDir()
	untar(t, r.Tar, dir)
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatalf("reading the OCI layout: %v", err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 {
		t.Fatalf("the index has %d manifests, want 1", len(im.Manifests))
	}
	desc := im.Manifests[0]
	if desc.Digest != r.Digest {
		t.Errorf("the index names %s, the build said %s", desc.Digest, r.Digest)
	}
	if got := desc.Annotations["io.containerd.image.name"]; got != r.Ref {
		t.Errorf("io.containerd.image.name is %q, want %q", got, r.Ref)
	}
	img, err := idx.Image(desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img); err != nil {
		t.Errorf("the OCI image is not valid: %v", err)
	}

	// The docker-save manifest.json names the same config and layers.
	dimg, err := tarball.ImageFromPath(r.Tar, nil)
	if err != nil {
		t.Fatalf("reading the tar as a docker archive: %v", err)
	}
	if err := validate.Image(dimg); err != nil {
		t.Errorf("the docker archive is not valid: %v", err)
	}
	ociCfg, _ := img.ConfigName()
	dockerCfg, _ := dimg.ConfigName()
	if ociCfg != dockerCfg {
		t.Errorf("the OCI layout's config is %s, manifest.json's %s", ociCfg, dockerCfg)
	}

	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	entry := "/usr/local/bin/" + r.Name
	if cf.Config.User != "65532:65532" {
		t.Errorf("user %q, want 65532:65532", cf.Config.User)
	}
	if len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != entry || len(cf.Config.Cmd) != 0 || len(cf.Config.Shell) != 0 {
		t.Errorf("entrypoint %q, cmd %q, shell %q: want the entrypoint %s alone", cf.Config.Entrypoint, cf.Config.Cmd, cf.Config.Shell, entry)
	}
	if cf.OS != "linux" || cf.Architecture != arch {
		t.Errorf("platform %s/%s, want linux/%s", cf.OS, cf.Architecture, arch)
	}
	if got := cf.Config.Labels["org.opencontainers.image.version"]; got != version {
		t.Errorf("label org.opencontainers.image.version is %q, want %q", got, version)
	}

	// The files: exactly these, no shell, nothing else to run.
	files := flatten(t, img)
	names := slices.Sorted(maps.Keys(files))
	want := []string{"etc/group", "etc/passwd", "etc/ssl/certs/ca-certificates.crt", "sbom.spdx.json", "usr/local/bin/" + r.Name}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Errorf("the image's files are %q, want %q", names, want)
	}
	pinned, err := os.ReadFile(filepath.Join(root, defaultCAs))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(files["etc/ssl/certs/ca-certificates.crt"], pinned) {
		t.Errorf("the image's CA bundle is not %s", defaultCAs)
	}
	if !strings.Contains(string(files["etc/passwd"]), "nonroot:x:65532:65532:") {
		t.Errorf("/etc/passwd does not name user 65532: %q", files["etc/passwd"])
	}

	// The binary is the version it says it is.
	bin := filepath.Join(t.TempDir(), r.Name)
	if err := os.WriteFile(bin, files["usr/local/bin/"+r.Name], 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s --version: %v: %s", r.Name, err, out)
	}
	head, err := exec.Command("git", "-C", root, "rev-parse", "HEAD").Output()
	if err != nil || len(head) < 7 {
		t.Fatalf("git rev-parse HEAD: %v %q", err, head)
	}
	goVersion, err := exec.Command(goCmd, "env", "GOVERSION").Output()
	if err != nil {
		t.Fatal(err)
	}
	re := fmt.Sprintf(`^%s %s \(commit %s(-dirty)?, %s\)\n$`, regexp.QuoteMeta(r.Name), regexp.QuoteMeta(version),
		head[:7], regexp.QuoteMeta(strings.TrimSpace(string(goVersion))))
	if !regexp.MustCompile(re).Match(out) {
		t.Errorf("%s --version printed %q, want a match for %s", r.Name, out, re)
	}

	// The SBOM: the same in the image and beside it, and it lists what
	// the binary links, at go.mod's versions.
	sbom, err := os.ReadFile(r.SBOM)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sbom, files["sbom.spdx.json"]) {
		t.Errorf("/sbom.spdx.json in the image differs from %s", r.SBOM)
	}
	var doc spdxDoc
	if err := json.Unmarshal(sbom, &doc); err != nil {
		t.Fatalf("the SBOM is not JSON: %v", err)
	}
	if doc.SPDXVersion != "SPDX-2.3" || doc.SPDXID != "SPDXRef-DOCUMENT" || doc.CreationInfo.Created == "" {
		t.Errorf("the SBOM's header is %q %q %q", doc.SPDXVersion, doc.SPDXID, doc.CreationInfo.Created)
	}
	pkgs := map[string]spdxPackage{}
	ids := map[string]bool{}
	for _, p := range doc.Packages {
		pkgs[p.Name] = p
		if ids[p.SPDXID] {
			t.Errorf("SPDXID %s is used twice", p.SPDXID)
		}
		ids[p.SPDXID] = true
	}
	for _, rel := range doc.Relationships {
		if !ids[rel.Related] {
			t.Errorf("relationship %+v names no package", rel)
		}
	}
	binSum := sha256.Sum256(files["usr/local/bin/"+r.Name])
	if p := pkgs[r.Name]; p.VersionInfo != version || len(p.Checksums) != 1 || p.Checksums[0].Value != hex.EncodeToString(binSum[:]) {
		t.Errorf("the SBOM's package %s is %+v; want version %s and the binary's sha256", r.Name, p, version)
	}
	const (
		vaultAPI       = "github.com/hashicorp/vault/api"
		secretsManager = "github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	)
	linked := []string{"k8s.io/apimachinery", "github.com/spf13/cobra"}
	notLinked := []string{"github.com/google/go-containerregistry"}
	switch r.Name {
	case "veil-apiserver":
		linked = append(linked, "k8s.io/apiserver", "k8s.io/client-go", vaultAPI, secretsManager)
	case "veil-syncer":
		// docs/architecture.md: veil-syncer links no provider.
		linked = append(linked, "k8s.io/apiserver", "k8s.io/client-go")
		notLinked = append(notLinked, vaultAPI, secretsManager)
	case "veil-provider-vault":
		// Threat model 002 T5: a provider's image links its backend
		// alone, and no API server.
		linked = append(linked, "google.golang.org/grpc", vaultAPI)
		notLinked = append(notLinked, secretsManager, "github.com/aws/aws-sdk-go-v2", "k8s.io/apiserver")
	case "veil-provider-aws":
		linked = append(linked, "google.golang.org/grpc", secretsManager, "github.com/aws/aws-sdk-go-v2/service/ssm")
		notLinked = append(notLinked, vaultAPI, "k8s.io/apiserver")
	default:
		t.Fatalf("no expectations for the modules of %s: add them here", r.Name)
	}
	for _, m := range linked {
		v, err := exec.Command(goCmd, "list", "-m", "-f", "{{.Version}}", m).Output()
		if err != nil {
			t.Fatalf("go list -m %s: %v", m, err)
		}
		p, ok := pkgs[m]
		if !ok {
			t.Errorf("the SBOM does not list %s", m)
			continue
		}
		if want := strings.TrimSpace(string(v)); p.VersionInfo != want || !strings.Contains(p.Comment, "go.sum h1:") {
			t.Errorf("the SBOM lists %s at %s (%q), go.mod at %s with its go.sum hash", m, p.VersionInfo, p.Comment, want)
		}
	}
	for _, m := range notLinked {
		if _, ok := pkgs[m]; ok {
			t.Errorf("the SBOM lists %s, which %s must not link", m, r.Name)
		}
	}
	if p := pkgs[caPackage]; len(p.Checksums) != 1 || p.Checksums[0].Value != fileSum(t, filepath.Join(root, defaultCAs)) {
		t.Errorf("the SBOM's %s is %+v, want the pinned bundle's sha256", caPackage, p)
	}
}

// flatten returns the regular files of img's filesystem.
func flatten(t *testing.T, img v1.Image) map[string][]byte {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	files := map[string][]byte{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		switch h.Typeflag {
		case tar.TypeReg:
			data, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			files[strings.TrimPrefix(h.Name, "/")] = data
		case tar.TypeDir:
		default:
			t.Errorf("%s is of type %c: want only files and directories", h.Name, h.Typeflag)
		}
	}
}

func untar(t *testing.T, path, dir string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, filepath.FromSlash(h.Name))
		if !strings.HasPrefix(p, dir+string(os.PathSeparator)) {
			t.Fatalf("%s escapes the archive", h.Name)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			data, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("%s is of type %c", h.Name, h.Typeflag)
		}
	}
}

// TestDeployedImagesAreBuilt: every ghcr.io/veil-dev image that artifacts/
// or the chart deploys is one `make images` builds (hack/verify-version.sh
// checks their tags).
func TestDeployedImagesAreBuilt(t *testing.T) {
	built := map[string]bool{}
	for _, b := range binaries {
		built[b.name] = true
	}
	re := regexp.MustCompile(`ghcr\.io/veil-dev/([a-z0-9-]+)`)
	seen := map[string]bool{}
	for _, dir := range []string{"../../artifacts", "../../charts/veil"} {
		err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !(strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".json")) {
				return err
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, m := range re.FindAllSubmatch(data, -1) {
				name := string(m[1])
				seen[name] = true
				if !built[name] {
					t.Errorf("%s deploys ghcr.io/veil-dev/%s, which make images does not build", path, name)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []string{"veil-apiserver", "veil-syncer", "veil-provider-vault", "veil-provider-aws"} {
		if !seen[want] {
			t.Errorf("nothing in artifacts/ or charts/veil deploys %s", want)
		}
	}
}
