package version

import (
	"bytes"
	"runtime/debug"
	"testing"

	"github.com/spf13/cobra"
)

func TestGet(t *testing.T) {
	vcs := func(rev, modified string) *debug.BuildInfo {
		return &debug.BuildInfo{
			GoVersion: "go1.26.8",
			Main:      debug.Module{Path: "github.com/veil-dev/veil", Version: "(devel)"},
			Settings: []debug.BuildSetting{
				{Key: "vcs", Value: "git"},
				{Key: "vcs.revision", Value: rev},
				{Key: "vcs.modified", Value: modified},
			},
		}
	}
	for _, tc := range []struct {
		name            string
		version, commit string
		bi              *debug.BuildInfo
		want            Info
	}{{
		name: "stamped at link time", version: "v0.1.0", commit: "abc1234",
		bi:   vcs("0123456789abcdef", "true"),
		want: Info{Version: "v0.1.0", Commit: "abc1234", GoVersion: "go1.26.8"},
	}, {
		name: "development build of a clean tree",
		bi:   vcs("0123456789abcdef", "false"),
		want: Info{Version: "v0.0.0-dev+0123456", Commit: "0123456", GoVersion: "go1.26.8"},
	}, {
		name: "development build of a changed tree",
		bi:   vcs("0123456789abcdef", "true"),
		want: Info{Version: "v0.0.0-dev+0123456-dirty", Commit: "0123456-dirty", GoVersion: "go1.26.8"},
	}, {
		name: "built with -buildvcs=false",
		bi:   &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}},
		want: Info{Version: "v0.0.0-dev", Commit: "unknown", GoVersion: "go1.26.8"},
	}, {
		name: "go install of a module version",
		bi:   &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.1.0"}},
		want: Info{Version: "v0.1.0", Commit: "unknown", GoVersion: "go1.26.8"},
	}, {
		name: "version only at link time", version: "v0.1.0",
		bi:   vcs("0123456789abcdef", "false"),
		want: Info{Version: "v0.1.0", Commit: "0123456", GoVersion: "go1.26.8"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			if got := get(tc.version, tc.commit, tc.bi); got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
	if got := get("", "", nil); got.Version != "v0.0.0-dev" || got.Commit != "unknown" || got.GoVersion == "" {
		t.Errorf("without build information: got %+v", got)
	}
}

func TestString(t *testing.T) {
	i := Info{Version: "v0.1.0", Commit: "abc1234", GoVersion: "go1.26.8"}
	if got, want := i.String("veil-apiserver"), "veil-apiserver v0.1.0 (commit abc1234, go1.26.8)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestAddFlag checks that --version prints the line and does not run the
// command.
func TestAddFlag(t *testing.T) {
	ran := false
	cmd := &cobra.Command{Use: "veil-test", RunE: func(*cobra.Command, []string) error { ran = true; return nil }}
	cmd.Flags().Bool("other", false, "")
	AddFlag(cmd)
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"--version"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if ran {
		t.Error("--version ran the command")
	}
	if got, want := out.String(), Get().String("veil-test")+"\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
