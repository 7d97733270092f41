// Command veil-apiserver serves external secrets through the Kubernetes API.
package main

import (
	"os"

	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/component-base/cli"

	"github.com/veil-dev/veil/pkg/cmd/server"
	"github.com/veil-dev/veil/pkg/version"
)

func main() {
	cmd := server.NewCommand(genericapiserver.SetupSignalContext())
	version.AddFlag(cmd)
	os.Exit(cli.Run(cmd))
}
