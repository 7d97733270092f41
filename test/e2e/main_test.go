// Package e2e tests Veil end to end: a real etcd, kube-apiserver and
// veil-apiserver, with every request going through the aggregator unless a
// test says it talks to veil-apiserver directly.
package e2e

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/veil-dev/veil/test/harness"
)

var (
	// feedVaultPort and feedAddress: the Vault server veil-apiserver
	// follows by its audit feed, and where the feed listens.
	feedVaultPort int
	feedAddress   string
	cluster       *harness.Cluster
	keep          = flag.Bool("keep", false, "keep the cluster's directory (certificates, logs) after the run")
)

// veilArgs are the flags every test runs veil-apiserver with; a test that
// needs others restarts it and restores these.
var veilArgs = []string{
	"--allowed-provider-endpoints=127.0.0.1,localhost",
	// moto serves plain HTTP; tests of the plaintext refusal restart
	// veil-apiserver without this flag.
	"--allow-plaintext-providers",
	// Tests that need every read to reach the provider set refreshInterval
	// to 1ns; the default floor (10s) would serve them cached values.
	"--min-refresh-interval=0",
	// Tests of rotation wait for detection; a short cycle keeps them short.
	"--change-detection-interval=2s",
}

// withoutFeed is args without the audit feed's flags, for a control plane
// of its own: a second listener on the feed's address would fail, and
// veil-apiserver refuses the flags without in-process providers.
func withoutFeed(args []string) []string {
	var out []string
	for _, a := range args {
		if !strings.HasPrefix(a, "--vault-audit-") {
			out = append(out, a)
		}
	}
	return out
}

func TestMain(m *testing.M) {
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	// One Vault server, started by TestVaultAuditFeed on a port chosen
	// now, feeds its socket audit device to veil-apiserver.
	ports, err := harness.FreePorts(2)
	if err != nil {
		fmt.Fprintln(os.Stderr, "choosing ports:", err)
		os.Exit(1)
	}
	feedVaultPort, feedAddress = ports[0], fmt.Sprintf("127.0.0.1:%d", ports[1])
	veilArgs = append(veilArgs, fmt.Sprintf("--vault-audit-feed=http://127.0.0.1:%d@%s", feedVaultPort, feedAddress), "--vault-audit-sources=127.0.0.1")
	cluster, err = harness.Start(ctx, harness.Options{Progress: os.Stderr, Keep: *keep, VeilArgs: veilArgs, ControllerManager: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the cluster:", err)
		os.Exit(1)
	}
	code := m.Run()
	if code != 0 {
		cluster.DumpLogs(os.Stderr, 60)
	}
	cluster.Stop()
	os.Exit(code)
}
