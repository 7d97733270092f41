// Command veil-syncer keeps Secrets in sync with the ExternalSecrets that
// ask for one, reading values through the Kubernetes API.
package main

import (
	"os"

	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/component-base/cli"

	"github.com/veil-dev/veil/pkg/syncer"
)

func main() {
	os.Exit(cli.Run(syncer.NewCommand(genericapiserver.SetupSignalContext())))
}
