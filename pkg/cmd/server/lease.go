package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"

	"github.com/veil-dev/veil/pkg/providers"
)

// ChangeDetectionLease elects the one replica that detects changes at
// providers; artifacts/base/apiserver/role.yaml grants it by this name.
const ChangeDetectionLease = "veil-apiserver-change-detection"

// leaseDuration is how long a leader that stopped renewing keeps the
// Lease; the next one then takes over.
const leaseDuration = 15 * time.Second

// leadChangeDetection runs work whenever this replica holds the Lease,
// until ctx ends. Losing the Lease stops work and the replica goes on
// serving reads, trying for the Lease again: unlike veil-syncer, nothing
// here writes what another replica might write at the same time except
// status.lastValueChange, where a second writer costs a read, not
// correctness.
func (o *Options) leadChangeDetection(ctx context.Context, kube kubernetes.Interface, work func(context.Context)) {
	identity := o.Identity
	if identity == "" {
		host, _ := os.Hostname()
		var b [4]byte
		_, _ = rand.Read(b[:])
		identity = host + "_" + hex.EncodeToString(b[:])
	}
	for ctx.Err() == nil {
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock: &resourcelock.LeaseLock{
				LeaseMeta:  metav1.ObjectMeta{Name: ChangeDetectionLease, Namespace: o.Namespace},
				Client:     kube.CoordinationV1(),
				LockConfig: resourcelock.ResourceLockConfig{Identity: identity},
			},
			LeaseDuration:   leaseDuration,
			RenewDeadline:   10 * time.Second,
			RetryPeriod:     2 * time.Second,
			ReleaseOnCancel: true,
			Name:            ChangeDetectionLease,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(leading context.Context) {
					klog.InfoS("Detecting value changes at providers", "identity", identity)
					work(leading)
				},
				OnStoppedLeading: func() { klog.InfoS("Stopped detecting value changes", "identity", identity) },
			},
		})
		if err != nil {
			klog.ErrorS(err, "Change detection cannot elect a leader; values change for readers when their refresh interval ends")
			return
		}
		le.Run(ctx)
	}
}

// publishLeader points --leader-endpointslice at this replica, with the
// ports of provider work only the leader does, and keeps trying until it
// has or the Lease is lost. The next leader overwrites it; a Service
// without selector, labelled with it, then routes to the leader alone.
func (o *Options) publishLeader(ctx context.Context, kube kubernetes.Interface) {
	var ports []discoveryv1.EndpointPort
	for _, p := range providers.LeaderPorts() {
		ports = append(ports, discoveryv1.EndpointPort{Name: ptr.To(p.Name), Port: ptr.To(p.Port), Protocol: ptr.To(corev1.ProtocolTCP)})
	}
	slices := kube.DiscoveryV1().EndpointSlices(o.Namespace)
	_ = wait.PollUntilContextCancel(ctx, 2*time.Second, true, func(ctx context.Context) (bool, error) {
		s, err := slices.Get(ctx, o.LeaderEndpointSlice, metav1.GetOptions{})
		if err == nil {
			s.Endpoints = []discoveryv1.Endpoint{{Addresses: []string{o.LeaderAddress}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}}
			s.Ports = ports
			_, err = slices.Update(ctx, s, metav1.UpdateOptions{})
		}
		if err != nil {
			klog.ErrorS(err, "Pointing the leader's EndpointSlice at this replica; Vault's audit feeds reach it only once it does", "endpointSlice", klog.KRef(o.Namespace, o.LeaderEndpointSlice))
			return false, nil
		}
		klog.InfoS("Pointed the leader's EndpointSlice at this replica", "endpointSlice", klog.KRef(o.Namespace, o.LeaderEndpointSlice), "address", o.LeaderAddress)
		return true, nil
	})
}
