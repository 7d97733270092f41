package vault

import (
	"context"
	"crypto/tls"
	"crypto/x509"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/providers"
)

// tlsConfigFor verifies Vault with the store's CA bundle, or the system
// roots when it names none; there is deliberately no way to skip
// verification. With spec.tls it also presents a client certificate.
func tlsConfigFor(ctx context.Context, store *providers.Store, spec *configv1alpha1.VaultProvider, creds providers.Credentials) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}

	bundle := append([]byte(nil), spec.CABundle...)
	what := "spec.provider.vault.caBundle"
	if p := spec.CAProvider; p != nil {
		var (
			pem []byte
			err error
		)
		switch p.Type {
		case "Secret":
			pem, err = creds.SecretKey(ctx, configv1alpha1.SecretKeySelector{Name: p.Name, Key: p.Key, Namespace: p.Namespace})
		case "ConfigMap":
			pem, err = creds.ConfigMapKey(ctx, p.Name, p.Key, p.Namespace)
		default:
			return nil, providers.Errorf(providers.Invalid, "%s: spec.provider.vault.caProvider.type %q is neither Secret nor ConfigMap", store, p.Type)
		}
		if err != nil {
			return nil, err
		}
		bundle = append(append(bundle, '\n'), pem...)
		what = "spec.provider.vault.caProvider (" + p.Type + " " + p.Name + ", key " + p.Key + ")"
		if len(spec.CABundle) > 0 {
			what = "spec.provider.vault.caBundle and caProvider"
		}
	}
	if len(bundle) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(bundle) {
			return nil, providers.Errorf(providers.Invalid, "%s: %s holds no PEM certificate", store, what)
		}
		cfg.RootCAs = pool
	}

	if t := spec.TLS; t != nil {
		cert, err := keyPair(ctx, store, creds, t.CertSecretRef, t.KeySecretRef, "spec.provider.vault.tls")
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// keyPair reads a PEM certificate and key from Secrets.
func keyPair(ctx context.Context, store *providers.Store, creds providers.Credentials, certRef, keyRef configv1alpha1.SecretKeySelector, field string) (tls.Certificate, error) {
	certPEM, err := creds.SecretKey(ctx, certRef)
	if err != nil {
		return tls.Certificate{}, err
	}
	keyPEM, err := creds.SecretKey(ctx, keyRef)
	if err != nil {
		return tls.Certificate{}, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// The error of X509KeyPair describes the PEM blocks, never their content.
		return tls.Certificate{}, providers.Wrap(providers.Invalid, err, "%s: %s: Secret %s key %q and Secret %s key %q do not hold a matching PEM certificate and private key",
			store, field, certRef.Name, certRef.Key, keyRef.Name, keyRef.Key)
	}
	return cert, nil
}
