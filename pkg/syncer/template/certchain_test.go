package template

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"
)

// testChain issues a root, an intermediate and a leaf, and returns each
// as PEM and the leaf's key.
func testChain(t *testing.T) (leaf, inter, root, key string) {
	t.Helper()
	issue := func(cn string, ca bool, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, string) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			IsCA: ca, BasicConstraintsValid: true, DNSNames: []string{cn},
		}
		if parent == nil {
			parent, parentKey = tmpl, k
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &k.PublicKey, parentKey)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c, k, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	}
	rc, rk, root := issue("root.test", true, nil, nil)
	ic, ik, inter := issue("inter.test", true, rc, rk)
	_, lk, leaf := issue("leaf.test", false, ic, ik)
	der, err := x509.MarshalPKCS8PrivateKey(lk)
	if err != nil {
		t.Fatal(err)
	}
	return leaf, inter, root, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

func TestFilterCertChain(t *testing.T) {
	leaf, inter, root, key := testChain(t)
	tests := []struct {
		name, input, tmpl, want string
	}{
		{"leaf of a bundle with its key", leaf + inter + root + key, `{{ .v | filterPEM "CERTIFICATE" | filterCertChain "leaf" }}`, leaf},
		{"intermediate", leaf + inter + root, `{{ .v | filterCertChain "intermediate" }}`, inter},
		{"root", leaf + inter + root, `{{ .v | filterCertChain "root" }}`, root},
		{"any order", root + leaf + inter, `{{ .v | filterCertChain "leaf" }}{{ .v | filterCertChain "root" }}`, leaf + root},
		{"no root in a partial chain", leaf + inter, `[{{ .v | filterCertChain "root" }}]`, "[]"},
		{"intermediate of a partial chain", leaf + inter, `{{ .v | filterCertChain "intermediate" }}`, inter},
		{"a root alone is no leaf", root, `[{{ .v | filterCertChain "leaf" }}]`, "[]"},
		{"a root alone", root, `{{ .v | filterCertChain "root" }}`, root},
		{"no intermediates", inter + root, `[{{ .v | filterCertChain "intermediate" }}]`, "[]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := Render(map[string]string{"k": tc.tmpl}, map[string][]byte{"v": []byte(tc.input)})
			if err != nil {
				t.Fatal(err)
			}
			if got := string(out["k"]); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestFilterCertChainErrors(t *testing.T) {
	leaf, inter, root, key := testChain(t)
	_, inter2, root2, _ := testChain(t)
	bogus := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("canary-not-a-cert-8d1f")}))
	many := strings.Repeat(root, maxChainCertificates+1)
	tests := []struct {
		name, input, tmpl, want string
	}{
		{"unknown type", leaf, `{{ .v | filterCertChain "Leaf" }}`, `certificate type "Leaf" is none of`},
		{"no certificates", key, `{{ .v | filterCertChain "leaf" }}`, "has no CERTIFICATE PEM block"},
		{"not a certificate", bogus, `{{ .v | filterCertChain "leaf" }}`, "not a valid X.509 certificate"},
		{"two chains", leaf + inter + root + inter2 + root2, `{{ .v | filterCertChain "leaf" }}`, "do not form one chain"},
		{"too many", many, `{{ .v | filterCertChain "root" }}`, "more than 64 certificates"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Render(map[string]string{"k": tc.tmpl}, map[string][]byte{"v": []byte(tc.input)})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			for _, secret := range []string{"canary-not-a-cert", "BEGIN", "MII"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q quotes the input", err)
				}
			}
		})
	}
}
