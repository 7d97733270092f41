package template

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
)

// maxChainCertificates bounds the certificates filterCertChain orders:
// linking them compares every pair, so the work grows with the square of
// their number. Real chains have a handful.
const maxChainCertificates = 64

// Certificate types filterCertChain keeps, External Secrets Operator's names.
const (
	chainLeaf         = "leaf"
	chainIntermediate = "intermediate"
	chainRoot         = "root"
)

// filterCertChain orders the certificates of s from leaf to root, linking
// each to its issuer by authority and subject key IDs, and returns the
// leaf, the intermediates or the root as PEM; an empty string when the
// chain has none of that kind (a self-signed certificate is a root, not a
// leaf). It only orders: it verifies no signature, date or constraint, so
// what it returns is not proof of trust.
func filterCertChain(certType, s string) (string, error) {
	switch certType {
	case chainLeaf, chainIntermediate, chainRoot:
	default:
		return "", &funcError{fmt.Sprintf("filterCertChain: the certificate type %q is none of %q, %q and %q", certType, chainLeaf, chainIntermediate, chainRoot)}
	}
	chain, err := orderChain([]byte(s))
	if err != nil {
		return "", err
	}
	var out bytes.Buffer
	write := func(c *x509.Certificate) {
		// Encoding into a bytes.Buffer cannot fail.
		_ = pem.Encode(&out, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	switch certType {
	case chainLeaf:
		if !selfIssued(chain[0]) {
			write(chain[0])
		}
	case chainIntermediate:
		for _, c := range chain[1:] {
			if selfIssued(c) {
				break
			}
			write(c)
		}
	case chainRoot:
		if last := chain[len(chain)-1]; selfIssued(last) {
			write(last)
		}
	}
	return out.String(), nil
}

// selfIssued: the certificate names no other issuer's key, as a root does.
func selfIssued(c *x509.Certificate) bool {
	return len(c.AuthorityKeyId) == 0 || bytes.Equal(c.AuthorityKeyId, c.SubjectKeyId)
}

// orderChain parses the CERTIFICATE blocks of data and returns them as one
// chain, leaf first. Blocks of other types are ignored. It fails unless
// the certificates form exactly one chain.
func orderChain(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		if len(certs) == maxChainCertificates {
			return nil, &funcError{fmt.Sprintf("filterCertChain: the input has more than %d certificates", maxChainCertificates)}
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			// x509's messages are about the encoding, but say nothing
			// more than that: the input is a value.
			return nil, &funcError{"filterCertChain: a CERTIFICATE block is not a valid X.509 certificate"}
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, &funcError{"filterCertChain: the input has no CERTIFICATE PEM block"}
	}
	return linkChain(certs)
}

// linkChain orders certs as one chain, leaf first, linking each to its
// issuer by authority and subject key IDs; it fails unless they form
// exactly one chain.
func linkChain(certs []*x509.Certificate) ([]*x509.Certificate, error) {
	parent := make([]int, len(certs))
	isParent := make([]bool, len(certs))
	for i, c := range certs {
		parent[i] = -1
		if len(c.AuthorityKeyId) == 0 {
			continue
		}
		for j, p := range certs {
			if i != j && bytes.Equal(c.AuthorityKeyId, p.SubjectKeyId) {
				parent[i], isParent[j] = j, true
				break
			}
		}
	}
	leaf := -1
	for i := range certs {
		if !isParent[i] {
			if leaf >= 0 {
				return nil, &funcError{"filterCertChain: the certificates do not form one chain (several are issuers of none of the others)"}
			}
			leaf = i
		}
	}
	if leaf < 0 {
		return nil, &funcError{"filterCertChain: the certificates do not form one chain (every one issues another, a cycle)"}
	}
	var chain []*x509.Certificate
	for i := leaf; i >= 0; i = parent[i] {
		if len(chain) == len(certs) {
			return nil, &funcError{"filterCertChain: the certificates do not form one chain (their issuers form a cycle)"}
		}
		chain = append(chain, certs[i])
	}
	return chain, nil
}
