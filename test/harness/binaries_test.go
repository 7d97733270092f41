package harness

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCachedBinaryNeverBuilds runs with an empty binary cache: looking a
// component up must fail at once, name the command that builds it, and
// leave the cache as empty as it found it. Before `make tools` existed as a
// step of its own, this lookup started a ten-minute build of Vault inside
// the unit tests' timeout.
func TestCachedBinaryNeverBuilds(t *testing.T) {
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	t.Setenv("VEIL_CACHE_DIR", cache)
	for _, tool := range []string{"etcd", "kube", "vault"} {
		t.Run(tool, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			path, err := CachedBinary(ctx, root, tool)
			if err == nil {
				t.Fatalf("found %s in an empty cache", path)
			}
			if !strings.Contains(err.Error(), "run 'make tools'") {
				t.Errorf("the error does not say how to build %s: %v", tool, err)
			}
			if ctx.Err() != nil {
				t.Errorf("the lookup of %s ran until its deadline: it must fail at once", tool)
			}
			entries, err := os.ReadDir(cache)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				t.Errorf("looking up %s wrote %s into the cache: a build started", tool, filepath.Join(cache, e.Name()))
			}
		})
	}
}
