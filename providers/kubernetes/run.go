// Package kubeprovider is veil-provider-kubernetes: a provider of Veil
// that serves the Secrets of a Kubernetes namespace (of this cluster or
// another) over the provider protocol veil.provider.v1, read-only.
//
// It is written as a third party would write a provider: of Veil it
// imports only the generated protocol package
// (pkg/providers/remote/proto/veil/provider/v1), and hack/verify-imports.sh
// holds it to that. Everything else — the gRPC service, mutual TLS with
// reloaded files, its configuration, limits and error reasons — is its
// own, following the comments of provider.proto.
package kubeprovider

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	providerv1 "github.com/veil-dev/veil/pkg/providers/remote/proto/veil/provider/v1"
)

// Options are veil-provider-kubernetes's flags.
type Options struct {
	// Listen is the address to serve on; Listener, if set, is used instead.
	Listen   string       `json:"listen,omitempty"`
	Listener net.Listener `json:"-"`
	// CertFile and KeyFile are the provider's certificate (its DNS SAN is
	// a ProviderRegistration's serverName) and key; ClientCAFile signs
	// veil-apiserver's client certificate.
	CertFile     string `json:"certFile"`
	KeyFile      string `json:"keyFile"`
	ClientCAFile string `json:"clientCAFile"`
	// AllowedClient is the only client identity served: a URI SAN or a
	// DNS SAN of veil-apiserver's client certificate.
	AllowedClient string `json:"allowedClient"`
	// ConfigFile is the configuration: the stores served (config.go).
	ConfigFile string `json:"configFile"`
}

// drainTimeout bounds how long Run waits for calls in flight once its
// context ends.
const drainTimeout = 30 * time.Second

// Run serves until ctx ends, then lets calls in flight finish (for
// drainTimeout at most).
func (o Options) Run(ctx context.Context, log *slog.Logger) error {
	if o.ConfigFile == "" {
		return errors.New("--config is empty: name the configuration file of the stores this provider serves")
	}
	srv, err := NewServer(o.ConfigFile, log)
	if err != nil {
		return err
	}
	tlsConfig, err := ServerTLS(TLSFiles{CertFile: o.CertFile, KeyFile: o.KeyFile, ClientCAFile: o.ClientCAFile}, o.AllowedClient, log)
	if err != nil {
		return err
	}
	lis := o.Listener
	if lis == nil {
		if lis, err = net.Listen("tcp", o.Listen); err != nil {
			return err
		}
	}
	g := NewGRPCServer(srv, tlsConfig)
	drained := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(drained)
		t := time.AfterFunc(drainTimeout, g.Stop)
		g.GracefulStop()
		t.Stop()
	})
	log.Info("serving", "address", lis.Addr().String(), "allowedClient", o.AllowedClient, "config", o.ConfigFile)
	err = g.Serve(lis)
	if stop() {
		g.Stop()
		return fmt.Errorf("serving on %s: %w", lis.Addr(), err)
	}
	<-drained
	return nil
}

// NewGRPCServer is the gRPC server of srv: mutual TLS, bounded messages,
// and connections that end after 30 minutes, so a rotated-out client
// certificate stops being trusted (a change stream then opens again).
func NewGRPCServer(srv *Server, tlsConfig *tls.Config) *grpc.Server {
	g := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(tlsConfig)),
		grpc.MaxRecvMsgSize(MaxMessageSize),
		grpc.MaxSendMsgSize(MaxMessageSize),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionAge: 30 * time.Minute, MaxConnectionAgeGrace: time.Minute}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 15 * time.Second, PermitWithoutStream: true}),
		grpc.ChainUnaryInterceptor(srv.logCalls),
	)
	providerv1.RegisterProviderServer(g, srv)
	return g
}
