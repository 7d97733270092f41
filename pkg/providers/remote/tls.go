package remote

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc/credentials"
	"k8s.io/klog/v2"
)

// TLSFiles are PEM files: this side's certificate (with its chain) and key,
// and the CA bundle that signs the peers it accepts. They are read again
// when they change, so a rotation (cert-manager, or a Secret update) needs
// no restart: new handshakes use the new files, and connections already
// made, with the calls on them, go on.
type TLSFiles struct {
	CertFile string
	KeyFile  string
	CAFile   string
	// CA is a PEM bundle used instead of CAFile: a ProviderRegistration's
	// caBundle. A new bundle comes with a new registration, and so with a
	// new connection.
	CA []byte
}

// fileStamp is what tells a file has changed. A Secret volume swaps a
// symlink to a new directory of new files; os.Stat follows it, so the swap
// shows as a new inode even when the size, and the coarse modification
// time, are the same.
type fileStamp struct {
	mod  time.Time
	size int64
	ino  uint64
}

func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	st := fileStamp{mod: fi.ModTime(), size: fi.Size()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = sys.Ino
	}
	return st, nil
}

// keyMaterial is the current certificate and CA pool of TLSFiles.
type keyMaterial struct {
	files TLSFiles

	mu     sync.Mutex
	stamps [3]fileStamp
	cert   *tls.Certificate
	pool   *x509.CertPool
	// failed is the stamps whose reload failed and was logged, so a bad
	// rotation is reported once, not at every handshake.
	failed [3]fileStamp
}

// loadKeyMaterial reads files; they must be valid now.
func loadKeyMaterial(files TLSFiles) (*keyMaterial, error) {
	if files.CertFile == "" || files.KeyFile == "" || (files.CAFile == "" && len(files.CA) == 0) {
		return nil, errors.New("mutual TLS needs a certificate file, a key file and a CA bundle; set all three")
	}
	k := &keyMaterial{files: files}
	stamps, err := k.stat()
	if err != nil {
		return nil, err
	}
	if err := k.load(stamps); err != nil {
		return nil, err
	}
	return k, nil
}

func (k *keyMaterial) stat() ([3]fileStamp, error) {
	var s [3]fileStamp
	for i, p := range []string{k.files.CertFile, k.files.KeyFile, k.files.CAFile} {
		if p == "" {
			continue // an inline CA bundle, which never changes
		}
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
	ca, where := k.files.CA, "the CA bundle"
	if k.files.CAFile != "" {
		if ca, err = os.ReadFile(k.files.CAFile); err != nil {
			return err
		}
		where = "the CA file " + k.files.CAFile
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return fmt.Errorf("%s holds no PEM certificate", where)
	}
	k.cert, k.pool, k.stamps = &cert, pool, stamps
	return nil
}

// current returns the certificate and CA pool to use for a new handshake,
// reading the files again if they changed. A rotation caught half-written
// (a new certificate with the old key) keeps the previous material until
// the files agree again.
func (k *keyMaterial) current() (*tls.Certificate, *x509.CertPool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	stamps, err := k.stat()
	if err == nil && stamps != k.stamps {
		if err = k.load(stamps); err != nil && stamps != k.failed {
			k.failed = stamps
			klog.ErrorS(err, "Keeping the previous TLS certificate: the rotated files cannot be used yet", "cert", k.files.CertFile, "ca", k.files.CAFile)
		}
	}
	return k.cert, k.pool
}

// Identity is the one peer identity a side accepts: a URI SAN when it has
// a scheme ("spiffe://cluster.local/ns/veil-system/sa/veil-apiserver"),
// otherwise a DNS SAN ("veil-apiserver.veil-system.svc"). The common name
// is never looked at.
func hasIdentity(cert *x509.Certificate, identity string) bool {
	if u, err := url.Parse(identity); err == nil && u.Scheme != "" {
		return slices.ContainsFunc(cert.URIs, func(v *url.URL) bool { return v.String() == identity })
	}
	// DNS names compare without case, as DNS does.
	return slices.ContainsFunc(cert.DNSNames, func(n string) bool { return strings.EqualFold(n, identity) })
}

// ServerTLS is the provider side's TLS: TLS 1.3, the client's certificate
// required and verified against files.CAFile, and only allowedClient
// accepted.
func ServerTLS(files TLSFiles, allowedClient string) (credentials.TransportCredentials, error) {
	if allowedClient == "" {
		return nil, errors.New("name the client identity to accept (veil-apiserver's URI or DNS SAN)")
	}
	k, err := loadKeyMaterial(files)
	if err != nil {
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
					// The certificate is one the CA signed: a workload
					// of the cluster's PKI is calling a provider it
					// should not. Worth an operator's attention.
					klog.InfoS("Refused a client certificate of another identity", "allowedClient", allowedClient, "uris", leaf.URIs, "dnsNames", leaf.DNSNames)
					return fmt.Errorf("the client certificate does not name %q, the only client this provider accepts", allowedClient)
				}
				return nil
			},
		}, nil
	}
	return credentials.NewTLS(base), nil
}

// ClientTLS is veil-apiserver's side: TLS 1.3, its own certificate, and a
// provider certificate verified against files.CAFile that names
// providerName (a DNS SAN), whatever address was dialed.
func ClientTLS(files TLSFiles, providerName string) (credentials.TransportCredentials, error) {
	if providerName == "" {
		return nil, errors.New("name the provider's identity (the DNS name its certificate must carry)")
	}
	k, err := loadKeyMaterial(files)
	if err != nil {
		return nil, err
	}
	return &clientCreds{keys: k, serverName: providerName}, nil
}

// clientCreds makes each handshake with the key material of the moment:
// gRPC's own TLS credentials fix a CA pool when they are made.
type clientCreds struct {
	keys       *keyMaterial
	serverName string
}

func (c *clientCreds) config() *tls.Config {
	cert, pool := c.keys.current()
	return &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool, ServerName: c.serverName, Certificates: []tls.Certificate{*cert}}
}

func (c *clientCreds) ClientHandshake(ctx context.Context, authority string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return credentials.NewTLS(c.config()).ClientHandshake(ctx, authority, conn)
}

func (c *clientCreds) ServerHandshake(net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("client credentials cannot serve")
}

func (c *clientCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls", SecurityVersion: "1.3", ServerName: c.serverName}
}

func (c *clientCreds) Clone() credentials.TransportCredentials {
	return &clientCreds{keys: c.keys, serverName: c.serverName}
}

// OverrideServerName is deprecated in gRPC; the pinned name stays.
func (c *clientCreds) OverrideServerName(string) error {
	return errors.New("the provider identity is pinned")
}
