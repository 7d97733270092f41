package aws

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/acm"
	acmtypes "github.com/aws/aws-sdk-go-v2/service/acm/types"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	esv1alpha1 "github.com/veil-dev/veil/pkg/apis/externalsecrets/v1alpha1"
	"github.com/veil-dev/veil/pkg/providers"
	"github.com/veil-dev/veil/test/conformance"
	"github.com/veil-dev/veil/test/conformance/remotetest"
	"github.com/veil-dev/veil/test/harness"
)

func acmAPI() *acm.Client { return acm.NewFromConfig(moto.Config(setupKeys.ID, setupKeys.Secret)) }

// tlsChain is a leaf for cn followed by its intermediate, and the leaf's
// key (harness.CertChain).
func tlsChain(t *testing.T, cn string) (crt, key string) {
	leaf, inter, _, key := harness.CertChain(t, cn)
	return leaf + inter, key
}

func tlsPush(t *testing.T, crt, key string) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]string{"tls.crt": crt, "tls.key": key})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// taggedCertificates lists the ARNs of certificates with the remote key tag name.
func taggedCertificates(t *testing.T, name string) []string {
	t.Helper()
	out, err := acmAPI().ListCertificates(ctxFor(t), &acm.ListCertificatesInput{Includes: &acmtypes.Filters{KeyTypes: acmtypes.KeyAlgorithm("").Values()}})
	if err != nil {
		t.Fatal(err)
	}
	var arns []string
	for _, s := range out.CertificateSummaryList {
		tags, err := acmAPI().ListTagsForCertificate(ctxFor(t), &acm.ListTagsForCertificateInput{CertificateArn: s.CertificateArn})
		if err != nil {
			t.Fatal(err)
		}
		for _, tg := range tags.Tags {
			if aws.ToString(tg.Key) == RemoteKeyTagKey && aws.ToString(tg.Value) == name {
				arns = append(arns, aws.ToString(s.CertificateArn))
			}
		}
	}
	return arns
}

// TestACMExport reads an exportable certificate by its ARN: the bundle is
// the certificate, its chain and the decrypted key, which belongs to the
// certificate.
func TestACMExport(t *testing.T) {
	resetMoto(t)
	c := newClient(t, configv1alpha1.AWSServiceCertificateManager, keysFor(setupKeys))
	req, err := acmAPI().RequestCertificate(ctxFor(t), &acm.RequestCertificateInput{DomainName: aws.String("app.example.com"),
		Options: &acmtypes.CertificateOptions{Export: acmtypes.CertificateExportEnabled}})
	if err != nil {
		t.Fatal(err)
	}
	arn := aws.ToString(req.CertificateArn)
	v, err := c.Get(ctxFor(t), providers.Ref{Key: arn})
	if err != nil {
		t.Fatal(err)
	}
	var certs []*x509.Certificate
	var key any
	for rest := v.Data; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			if strings.TrimSpace(string(rest)) != "" {
				t.Fatalf("the bundle has %d bytes that are not PEM", len(rest))
			}
			break
		}
		switch b.Type {
		case "CERTIFICATE":
			crt, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			certs = append(certs, crt)
		case "PRIVATE KEY":
			if key != nil {
				t.Fatal("two private keys")
			}
			if key, err = x509.ParsePKCS8PrivateKey(b.Bytes); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("unexpected PEM block %q", b.Type)
		}
	}
	if len(certs) < 2 || certs[0].Subject.CommonName != "app.example.com" {
		t.Fatalf("bundle has %d certificates, want app.example.com first and its chain", len(certs))
	}
	if key == nil || !key.(interface{ Public() crypto.PublicKey }).Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(certs[0].PublicKey) {
		t.Fatal("the bundle's private key is missing or is not the certificate's")
	}
	if !strings.HasSuffix(string(v.Data), "-----END PRIVATE KEY-----\n") {
		t.Error("the bundle does not end with the private key and one newline, as ESO's does")
	}

	for _, ref := range []providers.Ref{{Key: arn, Version: "1"}, {Key: "arn:aws:s3:::bucket"}} {
		if _, err := c.Get(ctxFor(t), ref); !(providers.ReasonOf(err) == providers.Invalid) {
			t.Errorf("Get(%+v) = %v, want Invalid", ref, err)
		}
	}
	if _, err := c.Get(ctxFor(t), providers.Ref{Key: strings.TrimSuffix(arn, arn[len(arn)-4:]) + "0000"}); !(providers.ReasonOf(err) == providers.NotFound) {
		t.Errorf("Get of a certificate that does not exist = %v, want NotFound", err)
	}
	if _, err := c.Find(ctxFor(t), providers.Find{NameRegexp: ".*"}); !(providers.ReasonOf(err) == providers.Invalid) {
		t.Errorf("Find = %v, want Invalid", err)
	}
	prefixed := newClient(t, configv1alpha1.AWSServiceCertificateManager, keysFor(setupKeys), func(p *configv1alpha1.AWSProvider) { p.Prefix = "team-a/" })
	if _, err := prefixed.Get(ctxFor(t), providers.Ref{Key: arn}); !(providers.ReasonOf(err) == providers.Invalid) || !strings.Contains(err.Error(), "prefix") {
		t.Errorf("an ARN through a store with a prefix = %v, want Invalid naming the prefix", err)
	}
}

// TestACMImportCycle imports a TLS Secret, finds it again by its tag,
// re-imports it into the same ARN when it changes, refuses other owners,
// and deletes it; the private key is in no error.
func TestACMImportCycle(t *testing.T) {
	resetMoto(t)
	c := newClient(t, configv1alpha1.AWSServiceCertificateManager, keysFor(setupKeys), func(p *configv1alpha1.AWSProvider) { p.Prefix = "team-a/" })
	owner := providers.Owner{Namespace: "team-a", Name: "cert", UID: "uid-1"}
	crt, key := tlsChain(t, "one.example.com")
	push := providers.Push{Key: "web", Value: tlsPush(t, crt, key), Owner: owner}

	if got, err := c.Push(ctxFor(t), push); err != nil || got != esv1alpha1.SecretPushResultPushed {
		t.Fatalf("first push = %q, %v", got, err)
	}
	arns := taggedCertificates(t, "team-a/web")
	if len(arns) != 1 {
		t.Fatalf("%d certificates tagged team-a/web, want 1", len(arns))
	}
	got, err := acmAPI().GetCertificate(ctxFor(t), &acm.GetCertificateInput{CertificateArn: aws.String(arns[0])})
	if err != nil {
		t.Fatal(err)
	}
	if pushed := pemDER([]byte(crt)); !slices.EqualFunc(pemDER([]byte(aws.ToString(got.Certificate))), pushed[:1], bytes.Equal) ||
		!slices.EqualFunc(pemDER([]byte(aws.ToString(got.CertificateChain)))[:1], pushed[1:], bytes.Equal) {
		t.Error("ACM does not hold the pushed leaf and chain")
	}
	tags, err := acmAPI().ListTagsForCertificate(ctxFor(t), &acm.ListTagsForCertificateInput{CertificateArn: aws.String(arns[0])})
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]string{}
	for _, tg := range tags.Tags {
		have[aws.ToString(tg.Key)] = aws.ToString(tg.Value)
	}
	if have[ManagedByTagKey] != ManagedByTagValue || have[OwnerUIDTagKey] != "uid-1" || have[OwnerNamespaceTagKey] != "team-a" {
		t.Errorf("tags %v do not mark the certificate as the owner's", have)
	}

	// A fresh client (as after a restart) finds it by listing.
	c2 := newClient(t, configv1alpha1.AWSServiceCertificateManager, keysFor(setupKeys), func(p *configv1alpha1.AWSProvider) { p.Prefix = "team-a/" })
	if got, err := c2.Push(ctxFor(t), push); err != nil || got != esv1alpha1.SecretPushResultUnchanged {
		t.Fatalf("same push again = %q, %v, want Unchanged", got, err)
	}
	crt2, key2 := tlsChain(t, "two.example.com")
	push.Value = tlsPush(t, crt2, key2)
	if got, err := c2.Push(ctxFor(t), push); err != nil || got != esv1alpha1.SecretPushResultPushed {
		t.Fatalf("changed push = %q, %v, want Pushed", got, err)
	}
	if again := taggedCertificates(t, "team-a/web"); len(again) != 1 || again[0] != arns[0] {
		t.Fatalf("after the change, certificates %v are tagged, want only %s re-imported", again, arns[0])
	}
	got, err = acmAPI().GetCertificate(ctxFor(t), &acm.GetCertificateInput{CertificateArn: aws.String(arns[0])})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(pemDER([]byte(aws.ToString(got.Certificate))), pemDER([]byte(crt2))[:1], bytes.Equal) {
		t.Error("the re-import did not replace the certificate")
	}

	other := providers.Owner{Namespace: "team-b", Name: "cert", UID: "uid-2"}
	if _, err := c.Push(ctxFor(t), providers.Push{Key: "web", Value: push.Value, Owner: other, Replace: true}); !(providers.ReasonOf(err) == providers.NotOwner) {
		t.Errorf("another owner's push = %v, want NotOwner", err)
	}
	if got, err := c.Push(ctxFor(t), providers.Push{Key: "web", Value: push.Value, Owner: other, IfNotExists: true}); err != nil || got != esv1alpha1.SecretPushResultSkippedExists {
		t.Errorf("another owner's IfNotExists push = %q, %v, want SkippedExists", got, err)
	}
	if err := c.Delete(ctxFor(t), providers.Delete{Key: "web", Owner: other}); !(providers.ReasonOf(err) == providers.NotOwner) {
		t.Errorf("another owner's delete = %v, want NotOwner", err)
	}

	// Refusals, none of which may quote the key.
	canaryKey := strings.Replace(key2, "-----BEGIN PRIVATE KEY-----\n", "-----BEGIN PRIVATE KEY-----\nveilcanaryacm", 1)
	for name, p := range map[string]providers.Push{
		"property":       {Key: "web", Property: "tls.crt", Value: push.Value, Owner: owner},
		"one key":        {Key: "web", Value: []byte(key2), Owner: owner},
		"no tls.key":     {Key: "web", Value: tlsPush(t, crt2, ""), Owner: owner},
		"bad tls.crt":    {Key: "web", Value: tlsPush(t, "-----BEGIN CERTIFICATE-----\nveilcanaryacm\n-----END CERTIFICATE-----\n", key2), Owner: owner},
		"bad key":        {Key: "web", Value: tlsPush(t, crt2, canaryKey), Owner: owner},
		"key for a tag":  {Key: strings.Repeat("k", 300), Value: push.Value, Owner: owner},
		"no owner":       {Key: "web", Value: push.Value},
		"mismatched key": {Key: "new", Value: tlsPush(t, crt, key2), Owner: owner},
	} {
		_, err := c.Push(ctxFor(t), p)
		if err == nil {
			t.Errorf("push %s succeeded", name)
			continue
		}
		for _, secret := range []string{"veilcanaryacm", "PRIVATE KEY", strings.Split(key2, "\n")[1][:20]} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("push %s: error %q quotes the key", name, err)
			}
		}
	}

	if err := c.Delete(ctxFor(t), providers.Delete{Key: "web", Owner: owner}); err != nil {
		t.Fatal(err)
	}
	if left := taggedCertificates(t, "team-a/web"); len(left) != 0 {
		t.Fatalf("certificates %v are left after the delete", left)
	}
	if err := c.Delete(ctxFor(t), providers.Delete{Key: "web", Owner: owner}); err != nil {
		t.Errorf("deleting again = %v, want nothing to do", err)
	}
	if _, err := c.Get(ctxFor(t), providers.Ref{Key: "web"}); !(providers.ReasonOf(err) == providers.NotFound) {
		t.Errorf("reading a deleted remote key = %v, want NotFound", err)
	}
}

// TestACMImportedNotExportable: ACM exports no imported certificate, and
// the error says so.
func TestACMImportedNotExportable(t *testing.T) {
	resetMoto(t)
	c := newClient(t, configv1alpha1.AWSServiceCertificateManager, keysFor(setupKeys))
	crt, key := tlsChain(t, "imported.example.com")
	owner := providers.Owner{Namespace: "team-a", Name: "cert", UID: "uid-1"}
	if _, err := c.Push(ctxFor(t), providers.Push{Key: "imported", Value: tlsPush(t, crt, key), Owner: owner}); err != nil {
		t.Fatal(err)
	}
	_, err := c.Get(ctxFor(t), providers.Ref{Key: "imported"})
	if !(providers.ReasonOf(err) == providers.Invalid) || !strings.Contains(err.Error(), "never imported ones") {
		t.Fatalf("reading an imported certificate = %v, want Invalid saying ACM does not export it", err)
	}
}

// TestACMRemote: veil-provider (as veil-provider-aws runs it) serves
// Certificate Manager stores out of process: an import, a re-import, an
// export and a delete over the protocol, and the client declares no
// capability ACM does not have.
func TestACMRemote(t *testing.T) {
	resetMoto(t)
	req, err := acmAPI().RequestCertificate(ctxFor(t), &acm.RequestCertificateInput{DomainName: aws.String("remote.example.com"),
		Options: &acmtypes.CertificateOptions{Export: acmtypes.CertificateExportEnabled}})
	if err != nil {
		t.Fatal(err)
	}
	remotetest.Through(t, &conformanceFixture{service: configv1alpha1.AWSServiceCertificateManager}, func(t *testing.T, st conformance.Store) {
		c := conformance.ClientOf(t, st)
		v, err := c.Get(ctxFor(t), providers.Ref{Key: aws.ToString(req.CertificateArn)})
		if err != nil || !bytes.Contains(v.Data, []byte("-----BEGIN PRIVATE KEY-----")) {
			t.Fatalf("export through the protocol: %d bytes, %v", len(v.Data), err)
		}
		owner := providers.Owner{Namespace: "team-a", Name: "cert", UID: "uid-1"}
		crt, key := tlsChain(t, "remote.example.com")
		for i, want := range []string{esv1alpha1.SecretPushResultPushed, esv1alpha1.SecretPushResultUnchanged} {
			if got, err := c.Push(ctxFor(t), providers.Push{Key: "remote-web", Value: tlsPush(t, crt, key), Owner: owner}); err != nil || got != want {
				t.Fatalf("push %d = %q, %v, want %s", i, got, err, want)
			}
		}
		if n := len(taggedCertificates(t, "remote-web")); n != 1 {
			t.Fatalf("%d certificates tagged remote-web, want 1", n)
		}
		_, err = c.Push(ctxFor(t), providers.Push{Key: "remote-web", Property: "x", Value: tlsPush(t, crt, key), Owner: owner})
		if providers.ReasonOf(err) != providers.Invalid || strings.Contains(err.Error(), "PRIVATE KEY") {
			t.Errorf("a push to a property = %v, want Invalid", err)
		}
		if err := c.Delete(ctxFor(t), providers.Delete{Key: "remote-web", Owner: owner}); err != nil {
			t.Fatal(err)
		}
		if n := len(taggedCertificates(t, "remote-web")); n != 0 {
			t.Fatalf("%d certificates tagged remote-web after the delete", n)
		}
		if _, ok := c.(providers.BatchGetter); ok {
			t.Error("the remote ACM client is a BatchGetter")
		}
		if _, ok := c.(providers.VersionLister); ok {
			t.Error("the remote ACM client is a VersionLister")
		}
		if _, ok := c.(providers.ChangeWatcher); ok {
			t.Error("the remote ACM client is a ChangeWatcher")
		}
	})
}

// TestACMReadsOfUnknownNamesDoNotList: one listing answers reads of names
// no certificate has for a while, so a tenant cannot make every read list
// the account's certificates and read each one's tags.
func TestACMReadsOfUnknownNamesDoNotList(t *testing.T) {
	resetMoto(t)
	c := newClient(t, configv1alpha1.AWSServiceCertificateManager, keysFor(setupKeys))
	for i := range 3 {
		crt, key := tlsChain(t, fmt.Sprintf("n%d.example.com", i))
		if _, err := acmAPI().ImportCertificate(ctxFor(t), &acm.ImportCertificateInput{Certificate: []byte(crt), PrivateKey: []byte(key)}); err != nil {
			t.Fatal(err)
		}
	}
	since := counter(t, "ListCertificates", "ListTagsForCertificate")
	for i := range 20 {
		if _, err := c.Get(ctxFor(t), providers.Ref{Key: fmt.Sprintf("missing-%d", i)}); providers.ReasonOf(err) != providers.NotFound {
			t.Fatalf("read of an unknown name = %v, want NotFound", err)
		}
	}
	got := since()
	if got["ListCertificates"] != 1 || got["ListTagsForCertificate"] != 3 {
		t.Errorf("20 reads of unknown names made calls %v, want one listing (1 ListCertificates, 3 ListTagsForCertificate)", got)
	}
}

// TestACMPushMetadataTags: ESO's ACM metadata (aws-acm-push-secret-with-
// metadata.yaml) tags the imported certificate beside Veil's own tags; a
// tag changed later is set on the same certificate, which is a push even
// when the certificate is the same; a tag posing as Veil's is refused
// before anything is imported.
func TestACMPushMetadataTags(t *testing.T) {
	resetMoto(t)
	c := newClient(t, configv1alpha1.AWSServiceCertificateManager, keysFor(setupKeys))
	owner := providers.Owner{Namespace: "team-a", Name: "cert", UID: "uid-1"}
	crt, key := tlsChain(t, "tagged.example.com")
	push := providers.Push{Key: "tagged", Value: tlsPush(t, crt, key), Owner: owner,
		Metadata: pushMetadata(`{"tags":{"environment":"production","team":"platform"}}`)}
	tagsOf := func() map[string]string {
		t.Helper()
		arns := taggedCertificates(t, "tagged")
		if len(arns) != 1 {
			t.Fatalf("%d certificates tagged with remote key tagged, want 1", len(arns))
		}
		out, err := acmAPI().ListTagsForCertificate(ctxFor(t), &acm.ListTagsForCertificateInput{CertificateArn: aws.String(arns[0])})
		if err != nil {
			t.Fatal(err)
		}
		have := map[string]string{}
		for _, tg := range out.Tags {
			have[aws.ToString(tg.Key)] = aws.ToString(tg.Value)
		}
		return have
	}

	if got, err := c.Push(ctxFor(t), push); err != nil || got != esv1alpha1.SecretPushResultPushed {
		t.Fatalf("first push = %q, %v", got, err)
	}
	if have := tagsOf(); have["environment"] != "production" || have["team"] != "platform" || have[OwnerUIDTagKey] != "uid-1" || have[RemoteKeyTagKey] != "tagged" {
		t.Errorf("tags after the import: %v", have)
	}
	push.Metadata = pushMetadata(`{"tags":{"environment":"staging","team":"platform"}}`)
	if got, err := c.Push(ctxFor(t), push); err != nil || got != esv1alpha1.SecretPushResultPushed {
		t.Fatalf("the same certificate with a changed tag = %q, %v, want Pushed", got, err)
	}
	if have := tagsOf(); have["environment"] != "staging" || have[OwnerUIDTagKey] != "uid-1" {
		t.Errorf("tags after the retag: %v", have)
	}
	if got, err := c.Push(ctxFor(t), push); err != nil || got != esv1alpha1.SecretPushResultUnchanged {
		t.Errorf("the same push again = %q, %v, want Unchanged", got, err)
	}

	crt2, key2 := tlsChain(t, "other.example.com")
	bad := providers.Push{Key: "posing", Value: tlsPush(t, crt2, key2), Owner: owner,
		Metadata: pushMetadata(`{"tags":{"veil.dev/owner-uid":"someone-else"}}`)}
	if _, err := c.Push(ctxFor(t), bad); providers.ReasonOf(err) != providers.Invalid || !strings.Contains(err.Error(), "is Veil's own") {
		t.Errorf("a tag posing as Veil's: %v, want Invalid naming it", err)
	}
	if arns := taggedCertificates(t, "posing"); len(arns) != 0 {
		t.Errorf("a refused push imported %d certificates", len(arns))
	}
	unknown := providers.Push{Key: "posing", Value: tlsPush(t, crt2, key2), Owner: owner,
		Metadata: pushMetadata(`{"tags":{"a":"b"},"description":"ACM has none"}`)}
	if _, err := c.Push(ctxFor(t), unknown); providers.ReasonOf(err) != providers.Invalid {
		t.Errorf("metadata with a field ACM's has not: %v, want Invalid", err)
	}
}
