// Command localcluster is `make run`: a local control plane with
// veil-apiserver and demo stores, ready for kubectl, until Ctrl-C.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/veil-dev/veil/test/harness"
)

func main() {
	dir := flag.String("dir", "_output/run", "working directory: certificates, kubeconfigs, data and logs (emptied first)")
	onNode := flag.Bool("node", false, "install Veil with the Helm chart on a real node of this machine (make run-node; root)")
	flag.Parse()
	if err := run(*dir, *onNode); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func run(dir string, onNode bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if onNode {
		return runNode(ctx, dir)
	}
	start := time.Now()
	// The demos' Vault and moto listen on loopback, which SecretStores may
	// reach only when the allowlist names it, as for an in-cluster Vault.
	// moto serves plain HTTP; a real install never needs
	// --allow-plaintext-providers.
	c, err := harness.Start(ctx, harness.Options{Dir: dir, Progress: os.Stderr, ControllerManager: true,
		VeilArgs: []string{"--allowed-provider-endpoints=127.0.0.1,localhost", "--allow-plaintext-providers"}})
	if err != nil {
		return err
	}
	defer c.Stop()

	if _, _, err := c.RunKubectl(ctx, "", nil, "apply", "-k", filepath.Join(c.Root, "artifacts", "examples", "fake")); err != nil {
		return err
	}
	stopVault, err := startVaultDemo(ctx, c)
	if err != nil {
		return err
	}
	defer stopVault()
	stopAWS, err := startAWSDemo(ctx, c)
	if err != nil {
		return err
	}
	defer stopAWS()
	syncer, err := c.StartSyncer(ctx, "veil-syncer")
	if err != nil {
		return err
	}
	defer syncer.Stop()
	alice, err := c.UserKubeconfig("alice")
	if err != nil {
		return err
	}

	fmt.Printf(`
Veil is up (%s). In another shell:

  export KUBECONFIG=%s
  alias kubectl=%s

  kubectl get externalsecretvalues -n demo                 # a table, never a value
  kubectl get externalsecretvalues -n demo -w --output-watch-events   # follows changes (Ctrl-C ends it)
  kubectl get externalsecretvalue -n demo db -o yaml       # the values, base64 like a Secret
  kubectl explain externalsecretvalues
  kubectl explain externalsecrets.spec
  kubectl auth can-i get externalsecretvalues -n demo --as alice   # yes
  kubectl auth can-i get externalsecretvalues -n demo --as bob     # no: bob only reads definitions
  kubectl get externalsecretvalue -n demo db --as bob      # 403
  kubectl --kubeconfig=%s get externalsecretvalue -n demo db -o jsonpath='{.data.password}' | base64 -d

  kubectl get externalsecretvalues -A                      # also demo-vault and demo-aws
  kubectl get secret -n demo legacy-db -o yaml             # materialised by veil-syncer for a legacy workload
  kubectl get externalsecret -n demo legacy-db             # READY, with the sync recorded in status and events

Logs: %s
Press Ctrl-C to stop and clean up.
`, time.Since(start).Round(100*time.Millisecond), c.AdminKubeconfig, c.Kubectl(), alice, filepath.Join(dir, "logs"))

	<-ctx.Done()
	fmt.Fprintln(os.Stderr, "\nstopping...")
	return nil
}
