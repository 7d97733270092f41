// Package version says which release and commit a Veil binary was built
// from. hack/image (make images) sets both at link time:
//
//	-ldflags "-X github.com/veil-dev/veil/pkg/version.Version=v0.1.0
//	          -X github.com/veil-dev/veil/pkg/version.Commit=abc1234"
//
// A plain `go build` sets neither; the version then says it is a
// development build, with the commit Go recorded (-buildvcs) if any.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// Version is the release version, "v" and the repository's VERSION file
// (semver), set at link time. Empty in a development build.
var Version = ""

// Commit is the commit the binary was built from, abbreviated, with
// "-dirty" when the tree had changes; set at link time. Empty in a
// development build.
var Commit = ""

// Info is what a binary says about its build.
type Info struct {
	Version   string // v0.1.0, or v0.0.0-dev+abc1234[-dirty]
	Commit    string // abc1234[-dirty], or "unknown"
	GoVersion string // go1.26.8
}

// Get returns the build information of the running binary.
func Get() Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		bi = nil
	}
	return get(Version, Commit, bi)
}

// get fills in what the link-time values leave empty from the build
// information Go embeds in every module-aware binary.
func get(version, commit string, bi *debug.BuildInfo) Info {
	info := Info{Version: version, Commit: commit, GoVersion: runtime.Version()}
	if bi != nil && bi.GoVersion != "" {
		info.GoVersion = bi.GoVersion
	}
	if info.Commit == "" && bi != nil {
		var rev string
		var modified bool
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if len(rev) > 7 {
			rev = rev[:7]
		}
		if rev != "" && modified {
			rev += "-dirty"
		}
		info.Commit = rev
	}
	if info.Version == "" {
		// `go install github.com/veil-dev/veil/cmd/apiserver@v0.1.0` records
		// the module's version; a build in a checkout records "(devel)".
		if bi != nil && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info.Version = bi.Main.Version
		} else if info.Commit != "" {
			info.Version = "v0.0.0-dev+" + info.Commit
		} else {
			info.Version = "v0.0.0-dev"
		}
	}
	if info.Commit == "" {
		info.Commit = "unknown"
	}
	return info
}

// String is the line --version prints, e.g.
// "veil-apiserver v0.1.0 (commit abc1234, go1.26.8)".
func (i Info) String(program string) string {
	return fmt.Sprintf("%s %s (commit %s, %s)", program, i.Version, i.Commit, i.GoVersion)
}

// AddFlag gives cmd a --version flag that prints Get().String(cmd.Name())
// and exits 0 without running the command.
func AddFlag(cmd *cobra.Command) {
	cmd.Version = Get().String(cmd.Name())
	cmd.SetVersionTemplate("{{.Version}}\n")
}
