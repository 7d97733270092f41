// Command veil is Veil's command-line tool for users: `veil convert`
// turns External Secrets Operator manifests into Veil's.
package main

import (
	"os"

	"github.com/spf13/cobra"
	"k8s.io/component-base/cli"

	"github.com/veil-dev/veil/pkg/convert"
	"github.com/veil-dev/veil/pkg/version"
)

func main() {
	root := &cobra.Command{
		Use:          "veil",
		Short:        "Veil's command-line tool",
		SilenceUsage: true,
	}
	version.AddFlag(root)
	root.AddCommand(convert.NewCommand())
	os.Exit(cli.Run(root))
}
