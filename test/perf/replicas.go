package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/veil-dev/veil/test/harness"
)

func init() {
	scenarios = append(scenarios, scenario{"P9",
		"provider calls with two veil-apiserver replicas vs one, for the same read load (P3's), on a control plane of its own that routes to both replicas' endpoints",
		replicasScenario})
}

// replicasScenario is P9. Each replica has its own cache, so a key read
// through both costs a provider call on each; this measures by how much
// that multiplies provider calls for a real load, with kube-apiserver
// spreading requests over the endpoints as it does in a cluster.
func replicasScenario(ctx context.Context, _ *harness.Cluster) error {
	c, err := harness.Start(ctx, harness.Options{Progress: os.Stderr, Keep: *keep, VeilReplicas: 2, KubeAPIServerArgs: strings.Fields(*kubeFlags)})
	if err != nil {
		return err
	}
	defer c.Stop()
	var perReplica [2]cacheActivity
	both := func(ctx context.Context) (cacheActivity, error) {
		var sum cacheActivity
		for i := range perReplica {
			a, err := replicaActivity(ctx, c, i)
			if err != nil {
				return sum, err
			}
			perReplica[i] = a
			sum.gets, sum.hits, sum.shared = sum.gets+a.gets, sum.hits+a.hits, sum.shared+a.shared
		}
		return sum, nil
	}
	if _, err := both(ctx); err != nil {
		return err
	}
	before := perReplica
	two, err := readSharedKeys(ctx, c, both)
	if err != nil {
		return fmt.Errorf("two replicas: %w", err)
	}
	// Stopped as Kubernetes stops a pod: its endpoint is withdrawn first.
	if err := c.StopVeilReplica(ctx, 1); err != nil {
		return err
	}
	one, err := readSharedKeys(ctx, c, func(ctx context.Context) (cacheActivity, error) { return replicaActivity(ctx, c, 0) })
	if err != nil {
		return fmt.Errorf("one replica: %w", err)
	}
	fmt.Printf("%d ExternalSecrets x %d unique remote keys, each read %d times by %d concurrent clients (a new store for each run)\n",
		*p3Readers, *p3Keys, *p3Rounds, *concurrency)
	fmt.Printf("  %-40s %10s %14s %10s\n", "", "reads", "provider calls", "took")
	fmt.Printf("  %-40s %10d %14.0f %10s\n", "one replica", one.reads, one.activity.gets, round(one.elapsed))
	fmt.Printf("  %-40s %10d %14.0f %10s\n", "two replicas", two.reads, two.activity.gets, round(two.elapsed))
	for i := range perReplica {
		fmt.Printf("  %-40s %10s %14.0f\n", fmt.Sprintf("  of which replica %d (cache hits %.0f)", i, perReplica[i].hits-before[i].hits), "",
			perReplica[i].gets-before[i].gets)
	}
	fmt.Printf("  %-40s %9.2fx (each replica has its own cache: at most 2x)\n\n", "provider calls, two vs one", two.activity.gets/max(one.activity.gets, 1))
	return nil
}
