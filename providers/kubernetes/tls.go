package kubeprovider

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
)

// TLSFiles are PEM files: the provider's certificate (with its chain) and
// key, and the CA bundle that signs the one client it accepts. They are
// read again when they change (a Secret volume's symlink swap,
// cert-manager's rotation): new handshakes use the new files, connections
// already made go on.
type TLSFiles struct {
	CertFile, KeyFile, ClientCAFile string
}

// keyMaterial is the certificate and client CA pool of the moment.
type keyMaterial struct {
	files TLSFiles
	log   *slog.Logger

	mu     sync.Mutex
	stamps [3]fileStamp
	cert   *tls.Certificate
	pool   *x509.CertPool
	// failed is the stamps of a reload that failed and was logged, so a
	// bad rotation is reported once, not at every handshake.
	failed [3]fileStamp
}

func (k *keyMaterial) stat() ([3]fileStamp, error) {
	var s [3]fileStamp
	for i, p := range []string{k.files.CertFile, k.files.KeyFile, k.files.ClientCAFile} {
		st, err := stampOf(p)
		if err != nil {
			return s, err
		}
		s[i] = st
	}
	return s, nil
}

func (k *keyMaterial) load(stamps [3]fileStamp) error {
	cert, err := tls.LoadX509KeyPair(k.files.CertFile, k.files.KeyFile)
	if err != nil {
		// The error names the files; it never quotes the key.
		return fmt.Errorf("loading the certificate %s and key %s: %w", k.files.CertFile, k.files.KeyFile, err)
	}
	ca, err := os.ReadFile(k.files.ClientCAFile)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return fmt.Errorf("the client CA file %s holds no PEM certificate", k.files.ClientCAFile)
	}
	k.cert, k.pool, k.stamps = &cert, pool, stamps
	return nil
}

// current returns the material for a new handshake, reading the files
// again if they changed. A rotation caught half-written (a new certificate
// with the old key) keeps the previous material until the files agree.
func (k *keyMaterial) current() (*tls.Certificate, *x509.CertPool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	stamps, err := k.stat()
	if err == nil && stamps != k.stamps {
		if err = k.load(stamps); err != nil && stamps != k.failed {
			k.failed = stamps
			k.log.Error("keeping the previous TLS certificate: the rotated files cannot be used yet", "cert", k.files.CertFile, "clientCA", k.files.ClientCAFile, "err", err)
		}
	}
	return k.cert, k.pool
}

// hasIdentity says whether cert names identity: a URI SAN when identity
// has a scheme (spiffe://...), otherwise a DNS SAN, compared without case.
// The common name is never looked at.
func hasIdentity(cert *x509.Certificate, identity string) bool {
	if u, err := url.Parse(identity); err == nil && u.Scheme != "" {
		return slices.ContainsFunc(cert.URIs, func(v *url.URL) bool { return v.String() == identity })
	}
	return slices.ContainsFunc(cert.DNSNames, func(n string) bool { return strings.EqualFold(n, identity) })
}

// ServerTLS is the provider's TLS: TLS 1.3 only, a client certificate
// required and verified against the client CA file, and only
// allowedClient accepted. Verification is never skipped.
func ServerTLS(files TLSFiles, allowedClient string, log *slog.Logger) (*tls.Config, error) {
	if allowedClient == "" {
		return nil, errors.New("--allowed-client is empty: name veil-apiserver's identity (a URI SAN such as spiffe://cluster.local/ns/veil-system/sa/veil-apiserver, or a DNS SAN)")
	}
	if files.CertFile == "" || files.KeyFile == "" || files.ClientCAFile == "" {
		return nil, errors.New("mutual TLS needs --tls-cert-file, --tls-private-key-file and --client-ca-file; set all three")
	}
	k := &keyMaterial{files: files, log: log}
	stamps, err := k.stat()
	if err != nil {
		return nil, err
	}
	if err := k.load(stamps); err != nil {
		return nil, err
	}
	base := &tls.Config{MinVersion: tls.VersionTLS13, NextProtos: []string{"h2"}}
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		cert, pool := k.current()
		return &tls.Config{
			MinVersion:   tls.VersionTLS13,
			NextProtos:   []string{"h2"},
			Certificates: []tls.Certificate{*cert},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    pool,
			VerifyConnection: func(cs tls.ConnectionState) error {
				if len(cs.PeerCertificates) == 0 {
					return errors.New("the client sent no certificate")
				}
				if leaf := cs.PeerCertificates[0]; !hasIdentity(leaf, allowedClient) {
					// Signed by the CA, but another workload: worth an
					// operator's attention.
					log.Warn("refused a client certificate of another identity", "allowedClient", allowedClient, "uris", fmt.Sprint(leaf.URIs), "dnsNames", leaf.DNSNames)
					return fmt.Errorf("the client certificate does not name %q, the only client this provider accepts", allowedClient)
				}
				return nil
			},
		}, nil
	}
	return base, nil
}
