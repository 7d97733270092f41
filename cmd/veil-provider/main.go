// Command veil-provider serves one Veil provider out of process.
package main

import (
	"os"

	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/component-base/cli"

	"github.com/veil-dev/veil/pkg/cmd/provider"
	"github.com/veil-dev/veil/pkg/version"

	// The providers veil-provider may serve; --provider picks one.
	_ "github.com/veil-dev/veil/pkg/providers/aws"
	_ "github.com/veil-dev/veil/pkg/providers/fake"
	_ "github.com/veil-dev/veil/pkg/providers/vault"
)

func main() {
	cmd := provider.NewCommand(genericapiserver.SetupSignalContext())
	version.AddFlag(cmd)
	os.Exit(cli.Run(cmd))
}
