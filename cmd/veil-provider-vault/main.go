// Command veil-provider-vault serves Vault (and OpenBao) out of
// process: veil-provider with only the vault backend linked, so its image
// carries no other backend's dependencies (docs/threat-model.md, 002 T5).
// cmd/veil-provider links every backend, for tests and demos.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/component-base/cli"

	"github.com/veil-dev/veil/pkg/cmd/provider"
	"github.com/veil-dev/veil/pkg/version"

	// The one provider this binary serves.
	_ "github.com/veil-dev/veil/pkg/providers/vault"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	cmd := provider.NewSingleCommand(ctx, "veil-provider-vault", "vault")
	version.AddFlag(cmd)
	os.Exit(cli.Run(cmd))
}
