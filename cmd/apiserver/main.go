// Command veil-apiserver serves external secrets through the Kubernetes API.
package main

import (
	"os"

	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/component-base/cli"

	"github.com/veil-dev/veil/pkg/cmd/server"
)

func main() {
	os.Exit(cli.Run(server.NewCommand(genericapiserver.SetupSignalContext())))
}
