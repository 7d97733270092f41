// Command gencerts writes a serving certificate for veil-apiserver, signed by
// a new CA, into artifacts/deploy/tls. The CA's key only ever exists in
// memory: nothing can sign another certificate that kube-apiserver would
// trust for Veil. Run it again to rotate.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/veil-dev/veil/test/harness"
)

func main() {
	dir := flag.String("dir", "artifacts/deploy/tls", "where to write ca.crt, tls.crt and tls.key")
	flag.Parse()
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ca, err := harness.NewCA(*dir, "ca")
	if err == nil {
		host := harness.VeilService + "." + harness.VeilNamespace + ".svc"
		_, err = ca.Issue(*dir, "tls", host, nil, []string{host, host + ".cluster.local"})
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("wrote %s/{ca.crt,tls.crt,tls.key}; apply with: kubectl apply -k artifacts/deploy\n", *dir)
}
