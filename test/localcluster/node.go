package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"k8s.io/client-go/dynamic"

	"github.com/veil-dev/veil/test/harness"
	"github.com/veil-dev/veil/test/node"
)

// runNode is `make run-node`: the control plane with a real node on this
// machine (test/node), Veil installed on it from the images of `make
// images` with the Helm chart, and the fake demo store. Ctrl-C stops it
// and restores the machine.
func runNode(ctx context.Context, dir string) (err error) {
	start := time.Now()
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	binDir, err := harness.CachedBinary(ctx, root, "node")
	if err != nil {
		return err
	}
	images, tag, err := node.Images(root)
	if err != nil {
		return err
	}
	n, err := node.New(binDir)
	if n != nil {
		defer func() {
			fmt.Fprintln(os.Stderr, "restoring the machine...")
			for _, e := range n.Cleanup() {
				fmt.Fprintln(os.Stderr, "cleanup:", e)
			}
			for _, l := range n.CheckClean() {
				fmt.Fprintln(os.Stderr, "left on the machine:", l)
			}
		}()
	}
	if err != nil {
		return err
	}
	c, err := node.StartControlPlane(ctx, filepath.Join(dir, "cluster"), os.Stderr)
	if err != nil {
		return err
	}
	defer c.Stop()
	work := filepath.Join(dir, "images")
	if err := os.MkdirAll(work, 0o700); err != nil {
		return err
	}
	pause, err := node.BuildPause(root, work)
	if err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "starting containerd, importing the images, starting the kubelet")
	if err := n.Start(ctx, c.AdminKubeconfig, c.APIServerPort(), c.ClusterCA.CertFile, append([]string{pause}, images...)); err != nil {
		return err
	}
	if err := n.WaitReady(ctx, c); err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "helm install veil charts/veil")
	ch, err := node.PrepareChart(ctx, root, work, c)
	if err != nil {
		return err
	}
	if err := ch.Install(ctx, tag); err != nil {
		return err
	}
	if err := node.WaitRollout(ctx, c, tag); err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(c.Admin)
	if err != nil {
		return err
	}
	if err := node.WaitAPIService(ctx, dyn); err != nil {
		return err
	}
	if _, stderr, err := c.RunKubectl(ctx, "", nil, "apply", "-k", filepath.Join(root, "artifacts", "examples", "fake")); err != nil {
		return fmt.Errorf("%v: %s", err, stderr)
	}
	fmt.Printf(`
Veil runs on a real node (%s): its pods in veil-system, installed with
the Helm chart from the images of make images. In another shell:

  export KUBECONFIG=%s
  alias kubectl=%s

  kubectl get pods -n veil-system -o wide
  kubectl get apiservice v1alpha1.externalsecrets.veil.dev
  kubectl get externalsecretvalues -n demo
  kubectl get externalsecretvalue -n demo db -o jsonpath='{.data.password}' | base64 -d

Logs: %s (control plane), %s (node)
Press Ctrl-C to stop, remove the node and restore the machine.
`, time.Since(start).Round(100*time.Millisecond), c.AdminKubeconfig, c.Kubectl(), filepath.Join(dir, "cluster", "logs"), filepath.Join(n.Dir, "logs"))
	<-ctx.Done()
	fmt.Fprintln(os.Stderr, "\nstopping...")
	return nil
}
