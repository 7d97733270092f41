// Command veil-syncer keeps Secrets in sync with the ExternalSecrets that
// ask for one, reading values through the Kubernetes API.
package main

import (
	"os"

	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/component-base/cli"

	"github.com/veil-dev/veil/pkg/syncer"
	"github.com/veil-dev/veil/pkg/version"
)

func main() {
	cmd := syncer.NewCommand(genericapiserver.SetupSignalContext())
	version.AddFlag(cmd)
	os.Exit(cli.Run(cmd))
}
