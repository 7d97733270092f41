package node

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// BuildPause builds the sandbox image (./pause, a static binary that waits
// for SIGTERM) into dir and returns its tar, tagged PauseImage.
func BuildPause(root, dir string) (string, error) {
	bin := filepath.Join(dir, "pause")
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./test/node/pause")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the pause image's binary: %w\n%s", err, out)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return "", err
	}
	var layerTar bytes.Buffer
	tw := tar.NewWriter(&layerTar)
	if err := tw.WriteHeader(&tar.Header{Name: "pause", Mode: 0o755, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
		return "", err
	}
	if _, err := tw.Write(data); err != nil {
		return "", err
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar.Bytes())), nil
	})
	if err != nil {
		return "", err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return "", err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return "", err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", runtime.GOARCH
	cfg.Config.Entrypoint = []string{"/pause"}
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		return "", err
	}
	return writeImage(dir, "pause.tar", PauseImage, img)
}

// Relabel writes src's image again as tag, with one more label: the same
// binaries, another digest (a new image for `helm upgrade`).
func Relabel(src, dir, file, tag, label string) (string, error) {
	img, err := tarball.ImageFromPath(src, nil)
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", src, err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return "", err
	}
	cfg = cfg.DeepCopy()
	if cfg.Config.Labels == nil {
		cfg.Config.Labels = map[string]string{}
	}
	cfg.Config.Labels["dev.veil.test/relabelled"] = label
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		return "", err
	}
	return writeImage(dir, file, tag, img)
}

func writeImage(dir, file, tag string, img v1.Image) (string, error) {
	ref, err := name.NewTag(tag)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, file)
	if err := tarball.WriteToFile(path, ref, img); err != nil {
		return "", fmt.Errorf("writing %s: %w", path, err)
	}
	return path, nil
}
