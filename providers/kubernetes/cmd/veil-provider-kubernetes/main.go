// Command veil-provider-kubernetes serves the Secrets of Kubernetes
// namespaces to Veil over the provider protocol, read-only. See
// docs/veil-provider.md ("A provider of your own").
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	kubeprovider "github.com/veil-dev/veil/providers/kubernetes"
)

func main() {
	var o kubeprovider.Options
	var level slog.Level
	flag.StringVar(&o.Listen, "listen", ":8443", "address to serve on")
	flag.StringVar(&o.CertFile, "tls-cert-file", "", "the provider's certificate (PEM, with its chain); read again when it changes")
	flag.StringVar(&o.KeyFile, "tls-private-key-file", "", "the provider's private key (PEM)")
	flag.StringVar(&o.ClientCAFile, "client-ca-file", "", "the CA bundle that signs veil-apiserver's client certificate")
	flag.StringVar(&o.AllowedClient, "allowed-client", "", "the only client served: a URI SAN (spiffe://...) or a DNS SAN of its certificate")
	flag.StringVar(&o.ConfigFile, "config", "", "the configuration file: the stores served and the namespaces they read")
	flag.TextVar(&level, "log-level", slog.LevelInfo, "debug logs every call (method, store, duration); never a key's value")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := o.Run(ctx, log); err != nil {
		fmt.Fprintln(os.Stderr, "veil-provider-kubernetes:", err)
		os.Exit(1)
	}
}
