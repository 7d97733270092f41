package e2e

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/acm"
	acmtypes "github.com/aws/aws-sdk-go-v2/service/acm/types"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	awsprovider "github.com/veil-dev/veil/pkg/providers/aws"
	"github.com/veil-dev/veil/test/harness"
)

// acmTagged lists the certificates moto has with Veil's remote key tag name.
func acmTagged(t *testing.T, api *acm.Client, name string) ([]string, error) {
	out, err := api.ListCertificates(ctxFor(t), &acm.ListCertificatesInput{Includes: &acmtypes.Filters{KeyTypes: acmtypes.KeyAlgorithm("").Values()}})
	if err != nil {
		return nil, err
	}
	var arns []string
	for _, s := range out.CertificateSummaryList {
		tags, err := api.ListTagsForCertificate(ctxFor(t), &acm.ListTagsForCertificateInput{CertificateArn: s.CertificateArn})
		if err != nil {
			return nil, err
		}
		for _, tg := range tags.Tags {
			if aws.ToString(tg.Key) == awsprovider.RemoteKeyTagKey && aws.ToString(tg.Value) == name {
				arns = append(arns, aws.ToString(s.CertificateArn))
			}
		}
	}
	return arns, nil
}

// TestAWSCertificateManagerExport: an ExternalSecret reads an exportable
// ACM certificate by its ARN, as in ESO's aws-acm-external-secret.yaml,
// and the syncer splits the bundle with filterPEM into a kubernetes.io/tls
// Secret whose key is the certificate's. The key appears nowhere else.
func TestAWSCertificateManagerExport(t *testing.T) {
	startSyncer(t)
	f := newAWSFixture(t)
	api := acm.NewFromConfig(f.moto.Config(harness.MotoAccessKeyID, harness.MotoSecretAccessKey))
	req, err := api.RequestCertificate(ctxFor(t), &acm.RequestCertificateInput{DomainName: aws.String("app.example.com"),
		Options: &acmtypes.CertificateOptions{Export: acmtypes.CertificateExportEnabled}})
	if err != nil {
		t.Fatal(err)
	}
	arn := aws.ToString(req.CertificateArn)
	createAWSStore(t, f.ns, "store", f.spec(configv1alpha1.AWSServiceCertificateManager, "aws-keys"))
	newTargetES(t, f.ns, "cert", configv1alpha1.ExternalSecretTarget{Template: &configv1alpha1.ExternalSecretTemplate{
		Type: corev1.SecretTypeTLS, EngineVersion: "v2",
		Data: map[string]string{
			"tls.crt": `{{ .cert | filterPEM "CERTIFICATE" }}`,
			"tls.key": `{{ .cert | filterPEM "PRIVATE KEY" }}`,
		},
	}}, awsEntry("cert", awsRef(arn, "", "")))

	s := waitSecret(t, f.ns, "cert", func(s *corev1.Secret) error {
		if len(s.Data["tls.key"]) == 0 {
			return fmt.Errorf("no tls.key yet")
		}
		return nil
	})
	if s.Type != corev1.SecretTypeTLS {
		t.Errorf("type %s, want kubernetes.io/tls", s.Type)
	}
	pair, err := tlsPair(s.Data["tls.crt"], s.Data["tls.key"])
	if err != nil {
		t.Fatalf("the Secret is not a usable TLS pair: %v", err)
	}
	if pair.Subject.CommonName != "app.example.com" {
		t.Errorf("tls.crt starts with %q, want the certificate of app.example.com", pair.Subject.CommonName)
	}
	// The decrypted key is a secret value: in the Secret, nowhere else.
	keyBody := strings.Split(string(s.Data["tls.key"]), "\n")[1]
	assertOnlyInEtcd(t, keyBody, "/registry/secrets/"+f.ns+"/cert")

	// An imported certificate is not exportable: the status says why.
	leaf, inter, _, key := harness.CertChain(t, "imported.example.com")
	imp, err := api.ImportCertificate(ctxFor(t), &acm.ImportCertificateInput{Certificate: []byte(leaf), CertificateChain: []byte(inter), PrivateKey: []byte(key)})
	if err != nil {
		t.Fatal(err)
	}
	newTargetES(t, f.ns, "imported", configv1alpha1.ExternalSecretTarget{}, awsEntry("cert", awsRef(aws.ToString(imp.CertificateArn), "", "")))
	waitESMessage(t, f.ns, "imported", "never imported ones")
}

// tlsPair checks that key is the key of the first certificate of crt.
func tlsPair(crt, key []byte) (*x509.Certificate, error) {
	cb, _ := pem.Decode(crt)
	kb, _ := pem.Decode(key)
	if cb == nil || kb == nil {
		return nil, fmt.Errorf("not PEM")
	}
	c, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, err
	}
	if !k.(crypto.Signer).Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(c.PublicKey) {
		return nil, fmt.Errorf("the key is not the certificate's")
	}
	return c, nil
}

// TestAWSCertificateManagerPush: a PushSecret of a kubernetes.io/tls
// Secret (ESO's aws-acm-push-secret.yaml) imports it into ACM, re-imports
// it into the same certificate when cert-manager would renew it, and
// deletes it with deletionPolicy Delete; the key is in no status or log.
func TestAWSCertificateManagerPush(t *testing.T) {
	startSyncer(t)
	f := newAWSFixture(t)
	api := acm.NewFromConfig(f.moto.Config(harness.MotoAccessKeyID, harness.MotoSecretAccessKey))
	grantPushSource(t, f.ns)
	createAWSStore(t, f.ns, "acm", f.spec(configv1alpha1.AWSServiceCertificateManager, "aws-keys"))

	putTLS := func(crt, key string) *corev1.Secret {
		t.Helper()
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "my-tls-cert", Namespace: f.ns}, Type: corev1.SecretTypeTLS,
			Data: map[string][]byte{"tls.crt": []byte(crt), "tls.key": []byte(key)}}
		secrets := cluster.KubeClient.CoreV1().Secrets(f.ns)
		out, err := secrets.Create(ctxFor(t), s, metav1.CreateOptions{})
		if err != nil {
			out, err = secrets.Update(ctxFor(t), s, metav1.UpdateOptions{})
		}
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	holds := func(leaf string) string {
		t.Helper()
		var arn string
		eventually(t, func() error {
			arns, err := acmTagged(t, api, "my-app-certificate")
			if err != nil || len(arns) != 1 {
				return fmt.Errorf("certificates %v tagged my-app-certificate (%v), want one", arns, err)
			}
			got, err := api.GetCertificate(ctxFor(t), &acm.GetCertificateInput{CertificateArn: aws.String(arns[0])})
			if err != nil {
				return err
			}
			if a, b := pemBlocks(aws.ToString(got.Certificate)), pemBlocks(leaf); len(a) != 1 || !bytes.Equal(a[0], b[0]) {
				return fmt.Errorf("ACM holds another certificate")
			}
			arn = arns[0]
			return nil
		})
		return arn
	}

	leaf, inter, _, key := harness.CertChain(t, "myapp.example.com")
	src := putTLS(leaf+inter, key)
	newPushSecret(t, f.ns, "acm-my-app-cert", "my-tls-cert", deleteRemote, []configv1alpha1.SecretStoreRef{storeRef("acm")}, match("", "my-app-certificate", ""))
	ps := waitPush(t, 30*time.Second, pushReady(f.ns, "acm-my-app-cert", configv1alpha1.ReasonSynced, src.ResourceVersion))
	if e := ps.Status.SyncedPushSecrets["SecretStore/acm"]["my-app-certificate"]; e.Result != "Pushed" {
		t.Errorf("syncedPushSecrets = %+v", ps.Status.SyncedPushSecrets)
	}
	arn := holds(leaf)

	// Renewed: the same ARN holds the new certificate.
	leaf2, inter2, _, key2 := harness.CertChain(t, "myapp.example.com")
	src = putTLS(leaf2+inter2, key2)
	waitPush(t, 30*time.Second, pushReady(f.ns, "acm-my-app-cert", configv1alpha1.ReasonSynced, src.ResourceVersion))
	if again := holds(leaf2); again != arn {
		t.Errorf("the renewed certificate is %s, want it re-imported into %s", again, arn)
	}

	// ESO's metadata (aws-acm-push-secret-with-metadata.yaml): its tags on
	// the same certificate, beside Veil's own.
	eventually(t, func() error {
		ps, err := cluster.VeilClient.ConfigV1alpha1().PushSecrets(f.ns).Get(ctxFor(t), "acm-my-app-cert", metav1.GetOptions{})
		if err != nil {
			return err
		}
		ps.Spec.Data[0].Metadata = &apiextensionsv1.JSON{Raw: []byte(`{"apiVersion":"kubernetes.external-secrets.io/v1alpha1","kind":"PushSecretMetadata","spec":{"tags":{"environment":"production","team":"platform"}}}`)}
		_, err = cluster.VeilClient.ConfigV1alpha1().PushSecrets(f.ns).Update(ctxFor(t), ps, metav1.UpdateOptions{})
		return err
	})
	eventually(t, func() error {
		out, err := api.ListTagsForCertificate(ctxFor(t), &acm.ListTagsForCertificateInput{CertificateArn: aws.String(arn)})
		if err != nil {
			return err
		}
		have := map[string]string{}
		for _, tg := range out.Tags {
			have[aws.ToString(tg.Key)] = aws.ToString(tg.Value)
		}
		if have["environment"] != "production" || have["team"] != "platform" || have[awsprovider.RemoteKeyTagKey] != "my-app-certificate" {
			return fmt.Errorf("tags of %s: %v, want the metadata's beside Veil's", arn, have)
		}
		return nil
	})
	if again := holds(leaf2); again != arn {
		t.Errorf("tagging moved the certificate to %s, want %s", again, arn)
	}

	// A Secret that is not a TLS pair is refused, without quoting its key.
	_, _, _, stray := harness.CertChain(t, "other.example.com")
	src = putTLS(leaf2+inter2, stray)
	eventually(t, func() error {
		ps, err := cluster.VeilClient.ConfigV1alpha1().PushSecrets(f.ns).Get(ctxFor(t), "acm-my-app-cert", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if msg := readyMessage(ps); !strings.Contains(msg, "not the key of the first certificate") {
			return fmt.Errorf("Ready message %q does not say the key does not match", msg)
		}
		return nil
	})
	for _, k := range []string{key, key2, stray} {
		assertOnlyInEtcd(t, strings.Split(k, "\n")[1], "/registry/secrets/"+f.ns+"/my-tls-cert")
	}

	deletePushSecret(t, f.ns, "acm-my-app-cert")
	if _, err := api.GetCertificate(ctxFor(t), &acm.GetCertificateInput{CertificateArn: aws.String(arn)}); err == nil {
		t.Error("the certificate survived the PushSecret's deletion")
	}
}

// TestTemplateFilterCertChain: filterCertChain splits a chain as in ESO's
// filtercertchain-template-v2-external-secret.yaml.
func TestTemplateFilterCertChain(t *testing.T) {
	startSyncer(t)
	ns := newNamespace(t, nil)
	leaf, inter, root, key := harness.CertChain(t, "chain.example.com")
	bundle := strings.ReplaceAll(root+leaf+key+inter, "\n", `\n`)
	createFakeStore(t, ns, "store", configv1alpha1.FakeProviderData{Key: "tls", Value: `{"bundle":"` + bundle + `"}`})
	newTargetES(t, ns, "tls", configv1alpha1.ExternalSecretTarget{Template: &configv1alpha1.ExternalSecretTemplate{
		Type: corev1.SecretTypeTLS, EngineVersion: "v2",
		Data: map[string]string{
			"ca.crt":   `{{ .mysecret | filterPEM "CERTIFICATE" | filterCertChain "intermediate" }}`,
			"tls.crt":  `{{ .mysecret | filterPEM "CERTIFICATE" | filterCertChain "leaf" }}`,
			"root.crt": `{{ .mysecret | filterPEM "CERTIFICATE" | filterCertChain "root" }}`,
			"tls.key":  `{{ .mysecret | filterPEM "PRIVATE KEY" }}`,
		},
	}}, dataRef("mysecret", "tls", "bundle"))
	waitSecret(t, ns, "tls", hasData(map[string]string{"ca.crt": inter, "tls.crt": leaf, "root.crt": root, "tls.key": key}))

	newTargetES(t, ns, "typo", configv1alpha1.ExternalSecretTarget{Template: &configv1alpha1.ExternalSecretTemplate{
		Data: map[string]string{"tls.crt": `{{ .mysecret | filterCertChain "leaves" }}`},
	}}, dataRef("mysecret", "tls", "bundle"))
	es := waitESMessage(t, ns, "typo", `"leaves" is none of`)
	if c := apimeta.FindStatusCondition(es.Status.Conditions, "Ready"); c.Reason != configv1alpha1.ReasonTemplateError || strings.Contains(c.Message, "BEGIN") {
		t.Errorf("Ready %s %q, want TemplateError without the value", c.Reason, c.Message)
	}
}

// waitESMessage waits until the ExternalSecret's Ready condition, for its
// generation, is False with a message containing want.
func waitESMessage(t *testing.T, ns, name, want string) *configv1alpha1.ExternalSecret {
	t.Helper()
	var es *configv1alpha1.ExternalSecret
	eventually(t, func() error {
		var err error
		if es, err = cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(ns).Get(ctxFor(t), name, metav1.GetOptions{}); err != nil {
			return err
		}
		c := apimeta.FindStatusCondition(es.Status.Conditions, "Ready")
		if c == nil || c.ObservedGeneration != es.Generation || c.Status != metav1.ConditionFalse || !strings.Contains(c.Message, want) {
			return fmt.Errorf("Ready condition %+v, want False saying %q", c, want)
		}
		return nil
	})
	return es
}

// assertOnlyInEtcd checks that value is in no log and in etcd at most
// under the keys given (the Secrets meant to hold it).
func assertOnlyInEtcd(t *testing.T, value string, allowed ...string) {
	t.Helper()
	s, err := cluster.FindCanary(ctxFor(t), value)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range s.EtcdKeys {
		if !slices.Contains(allowed, k) {
			t.Errorf("a private key is in etcd under %s", k)
		}
	}
	if s.InFiles() != 0 {
		t.Errorf("a private key is in logs: %s", s)
	}
	m, err := cluster.VeilMetrics(ctxFor(t))
	if err != nil {
		t.Fatal(err)
	}
	notInMetrics(t, m, value)
}

func pemBlocks(s string) [][]byte {
	var out [][]byte
	for rest := []byte(s); ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			return out
		}
		out = append(out, b.Bytes)
	}
}

// TestAWSCertificateManagerKeyScope: a ClusterSecretStore on ACM that
// confines a tenant to "teams/{namespace}/" refuses reads by ARN (an ARN
// can name any certificate of the account) with a 403 before any export,
// and the tenant reads the certificate imported under its own remote key
// by name: here none is, so the read is 404 after a listing, not an export.
func TestAWSCertificateManagerKeyScope(t *testing.T) {
	f := newAWSFixture(t)
	api := acm.NewFromConfig(f.moto.Config(harness.MotoAccessKeyID, harness.MotoSecretAccessKey))
	req, err := api.RequestCertificate(ctxFor(t), &acm.RequestCertificateInput{DomainName: aws.String("scoped.example.com"),
		Options: &acmtypes.CertificateOptions{Export: acmtypes.CertificateExportEnabled}})
	if err != nil {
		t.Fatal(err)
	}
	tenant := newNamespace(t, nil)
	spec := f.spec(configv1alpha1.AWSServiceCertificateManager, "aws-keys")
	spec.Auth.SecretRef.AccessKeyID.Namespace = &f.ns
	spec.Auth.SecretRef.SecretAccessKey.Namespace = &f.ns
	css := &configv1alpha1.ClusterSecretStore{
		ObjectMeta: metav1.ObjectMeta{Name: unique("css-acm-")},
		Spec: configv1alpha1.ClusterSecretStoreSpec{
			SecretStoreSpec: configv1alpha1.SecretStoreSpec{Provider: configv1alpha1.SecretStoreProvider{AWS: &spec}},
			Conditions:      []configv1alpha1.ClusterSecretStoreCondition{{Namespaces: []string{tenant}, RemoteKeyPrefix: "teams/{namespace}/"}},
		},
	}
	if _, err := cluster.VeilClient.ConfigV1alpha1().ClusterSecretStores().Create(ctxFor(t), css, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cluster.VeilClient.ConfigV1alpha1().ClusterSecretStores().Delete(ctxFor(t), css.Name, metav1.DeleteOptions{})
	})
	ref := configv1alpha1.SecretStoreRef{Kind: configv1alpha1.ClusterSecretStoreKind, Name: css.Name}

	calls := awsCallsSince(t, "ExportCertificate")
	createExternalSecret(t, tenant, "by-arn", ref, nil, awsEntry("cert", awsRef(aws.ToString(req.CertificateArn), "", "")))
	valueError(t, tenant, "by-arn", apierrors.IsForbidden, "is an ARN")
	createExternalSecret(t, tenant, "by-name", ref, nil, awsEntry("cert", awsRef("teams/"+tenant+"/web", "", "")))
	valueError(t, tenant, "by-name", apierrors.IsNotFound, "veil.dev/remote-key")
	if n := calls()["ExportCertificate"]; n != 0 {
		t.Errorf("the refused reads exported %v certificates", n)
	}
}
