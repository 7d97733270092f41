package aws

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/acm"
	acmtypes "github.com/aws/aws-sdk-go-v2/service/acm/types"

	esv1alpha1 "github.com/veil-dev/veil/pkg/apis/externalsecrets/v1alpha1"
	"github.com/veil-dev/veil/pkg/providers"
)

// AWS Certificate Manager, as External Secrets Operator has it:
//
//   - A read names a certificate by its ARN and returns one PEM bundle: the
//     certificate, its chain and its private key, exported with a one-time
//     passphrase and decrypted here. ACM exports private certificates and
//     public ones requested with export enabled, never imported ones.
//   - A push imports a kubernetes.io/tls Secret, pushed whole (no
//     secretKey), with ImportCertificate, and re-imports it into the same
//     ARN when it changes. ACM names certificates by ARN only, so the
//     remote key is a tag (RemoteKeyTagKey) Veil finds the certificate by.
//
// Veil also reads a certificate by that remote key (not only by ARN),
// which is the only spelling a ClusterSecretStore's remoteKeyPrefix
// allows, since an ARN could name any certificate of the account.

// RemoteKeyTagKey tags a certificate Veil imported with its remote key
// (with the store's prefix).
const RemoteKeyTagKey = "veil.dev/remote-key"

const (
	// acmPassphraseLength: ACM wants 4 to 128 bytes, without #, $ or %.
	acmPassphraseLength = 32
	// acmMaxResponseBytes bounds what Veil reads of one ACM response: a
	// certificate chain may be up to 2 MiB, a page of 1000 summaries less.
	acmMaxResponseBytes = 4 << 20
	// acmListPage is the most certificates one ListCertificates page has.
	acmListPage = 1000
	// acmMaxTagValue is ACM's bound on a tag value.
	acmMaxTagValue = 256
	// acmARNCacheSize bounds the remote keys whose ARN is remembered.
	acmARNCacheSize = 512
	// acmIndexTTL is how long a read trusts a listing for the names it
	// did not find.
	acmIndexTTL = 30 * time.Second
)

var acmARNPattern = regexp.MustCompile(`^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/[0-9a-zA-Z-]{1,128}$`)

// acmTagValuePattern is what ACM accepts in a tag value.
var acmTagValuePattern = regexp.MustCompile(`^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$`)

type acmClient struct {
	base
	api *acm.Client

	mu sync.Mutex
	// arns remembers the ARN of remote keys found or imported, checked
	// against the certificate's tags before each use, so that most pushes
	// do not list the account's certificates.
	arns map[string]string
	// indexed is when the account was last listed.
	indexed time.Time
}

var _ providers.Client = &acmClient{}

func newACMClient(b base, cfg aws.Config, endpoint *string) *acmClient {
	limited := &limitedHTTPClient{next: cfg.HTTPClient, max: acmMaxResponseBytes}
	return &acmClient{base: b, arns: map[string]string{},
		api: acm.NewFromConfig(cfg, func(o *acm.Options) { o.BaseEndpoint, o.HTTPClient = endpoint, limited })}
}

// Get exports the certificate ref names and returns it, its chain and its
// decrypted private key as one PEM bundle, in that order, each ending in
// a newline.
func (c *acmClient) Get(ctx context.Context, ref providers.Ref) (providers.Value, error) {
	if ref.Version != "" {
		return providers.Value{}, providers.Errorf(providers.Invalid, "%s: remoteRef.version %q: AWS Certificate Manager keeps one version of a certificate; remove version", c.store, ref.Version)
	}
	arn, err := c.certificateFor(ctx, ref.Key)
	if err != nil {
		return providers.Value{}, err
	}
	passphrase, err := acmPassphrase()
	if err != nil {
		return providers.Value{}, providers.Errorf(providers.Unavailable, "%s: no randomness for an export passphrase", c.store)
	}
	doing := fmt.Sprintf("exporting certificate %q", ref.Key)
	out, err := c.api.ExportCertificate(ctx, &acm.ExportCertificateInput{CertificateArn: aws.String(arn), Passphrase: passphrase})
	if err != nil {
		if f := classify(err); f.code == "ValidationException" || f.code == "InvalidRequestException" {
			return providers.Value{}, providers.Wrap(providers.Invalid, f.cause(err), "%s: AWS refused %s: ACM exports only private certificates and public ones requested with export enabled, never imported ones", c.store, doing)
		}
		return providers.Value{}, c.callError(err, doing)
	}
	var parts [][]byte
	for _, p := range []*string{out.Certificate, out.CertificateChain} {
		if s := strings.TrimRight(aws.ToString(p), "\r\n"); s != "" {
			parts = append(parts, []byte(s))
		}
	}
	if out.PrivateKey != nil {
		key, err := decryptExportedKey([]byte(*out.PrivateKey), passphrase)
		if err != nil {
			return providers.Value{}, providers.Wrap(providers.Unavailable, err, "%s: %s", c.store, doing)
		}
		parts = append(parts, bytes.TrimRight(key, "\r\n"))
	}
	if len(parts) == 0 {
		return providers.Value{}, providers.Errorf(providers.Unavailable, "%s: %s: AWS returned no certificate", c.store, doing)
	}
	return providers.Value{Data: append(bytes.Join(parts, []byte("\n")), '\n')}, nil
}

// certificateFor is the ARN of the certificate a read names: an ARN, or
// the remote key of a certificate Veil imported.
func (c *acmClient) certificateFor(ctx context.Context, key string) (string, error) {
	if strings.HasPrefix(key, "arn:") {
		if c.prefix != "" {
			// The prefix confines the store's keys; an ARN escapes it.
			return "", providers.Errorf(providers.Invalid, "%s has spec.provider.aws.prefix %q, which applies to remote keys; an ARN cannot be under it, so name the certificate by the remote key it was imported under", c.store, c.prefix)
		}
		if !acmARNPattern.MatchString(key) {
			return "", providers.Errorf(providers.Invalid, "%s: %q is not the ARN of an ACM certificate (arn:aws:acm:<region>:<account>:certificate/<id>)", c.store, key)
		}
		return key, nil
	}
	name := c.key(key)
	found, err := c.find(ctx, name, false)
	if err != nil {
		return "", err
	}
	if !found.exists {
		return "", providers.Errorf(providers.NotFound, "%s: no certificate has the tag %s=%q (a certificate is read by its ARN, or by the remote key a PushSecret imported it under)", c.store, RemoteKeyTagKey, name)
	}
	return found.arn, nil
}

func acmPassphrase() ([]byte, error) {
	const chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, acmPassphraseLength)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	for i := range b {
		// 256 is not a multiple of 62; the bias does not matter for a
		// passphrase used once, on a TLS connection, for one response.
		b[i] = chars[int(b[i])%len(chars)]
	}
	return b, nil
}

func (c *acmClient) Find(context.Context, providers.Find) (map[string]providers.Value, error) {
	return nil, providers.Errorf(providers.Invalid, "%s: dataFrom.find is not supported for AWS Certificate Manager; read each certificate by its ARN with data[].remoteRef.key", c.store)
}

// acmCertificate is a certificate found by its remote key tag.
type acmCertificate struct {
	current
	arn string
}

// find looks up the certificate tagged with remote key name: the cached
// ARN if its tags still say so, else by listing the account's
// certificates and their tags (ACM has no tag filter), which indexes
// every remote key at once. Several certificates with the tag (two imports
// racing) resolve to the one of the lexically smallest ARN, as External
// Secrets Operator does.
//
// A read (fresh false) trusts an index younger than acmIndexTTL for names
// it does not hold, so that reads of names that do not exist cannot make
// each read list the whole account; a push or delete (fresh true) always
// lists, so that it never imports a second certificate for a key another
// replica imported a moment ago.
func (c *acmClient) find(ctx context.Context, name string, fresh bool) (acmCertificate, error) {
	c.mu.Lock()
	cached, ok := c.arns[name]
	if !ok && !fresh && time.Since(c.indexed) < acmIndexTTL {
		c.mu.Unlock()
		return acmCertificate{}, nil
	}
	c.mu.Unlock()
	if ok {
		cur, err := c.certificateTags(ctx, cached, name)
		if err != nil {
			return acmCertificate{}, err
		}
		if cur.exists {
			return acmCertificate{current: cur, arn: cached}, nil
		}
		c.forget(name)
	}
	in := &acm.ListCertificatesInput{MaxItems: aws.Int32(acmListPage),
		// Without Includes, ACM lists RSA-2048 certificates only.
		Includes: &acmtypes.Filters{KeyTypes: acmtypes.KeyAlgorithm("").Values()}}
	listed := 0
	index := map[string]string{}
	var match acmCertificate
	pages := acm.NewListCertificatesPaginator(c.api, in)
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return acmCertificate{}, c.callError(err, fmt.Sprintf("listing certificates to find the one with tag %s=%q", RemoteKeyTagKey, name))
		}
		if listed += len(page.CertificateSummaryList); listed > maxFindListed {
			return acmCertificate{}, providers.Errorf(providers.Invalid, "%s: the account has more than %d certificates, more than Veil lists to find one by its tag %s=%q", c.store, maxFindListed, RemoteKeyTagKey, name)
		}
		for _, s := range page.CertificateSummaryList {
			// Only imported certificates can be Veil's.
			if s.Type != "" && s.Type != acmtypes.CertificateTypeImported {
				continue
			}
			arn := aws.ToString(s.CertificateArn)
			tags, err := c.tagsOf(ctx, arn)
			if err != nil {
				return acmCertificate{}, err
			}
			key, cur := tagged(tags, name)
			if key == "" {
				continue
			}
			if prev, ok := index[key]; !ok || arn < prev {
				index[key] = arn
			}
			if cur.exists && (match.arn == "" || arn < match.arn) {
				match = acmCertificate{current: cur, arn: arn}
			}
		}
	}
	c.mu.Lock()
	c.indexed = time.Now()
	c.mu.Unlock()
	for key, arn := range index {
		c.remember(key, arn)
	}
	return match, nil
}

// certificateTags reads the tags of arn: exists is false when it is gone
// or is not tagged with remote key name.
func (c *acmClient) certificateTags(ctx context.Context, arn, name string) (current, error) {
	tags, err := c.tagsOf(ctx, arn)
	if err != nil {
		return current{}, err
	}
	_, cur := tagged(tags, name)
	return cur, nil
}

// tagsOf reads the tags of arn; none when it is gone.
func (c *acmClient) tagsOf(ctx context.Context, arn string) ([]acmtypes.Tag, error) {
	out, err := c.api.ListTagsForCertificate(ctx, &acm.ListTagsForCertificateInput{CertificateArn: aws.String(arn)})
	if err != nil {
		if classify(err).reason == providers.NotFound {
			return nil, nil
		}
		return nil, c.callError(err, fmt.Sprintf("reading the tags of certificate %s", arn))
	}
	return out.Tags, nil
}

// tagged returns the remote key tags say and, if it is name, the state
// of the certificate they describe (exists false otherwise).
func tagged(tags []acmtypes.Tag, name string) (string, current) {
	var key string
	var cur current
	for _, t := range tags {
		k, v := aws.ToString(t.Key), aws.ToString(t.Value)
		if k == RemoteKeyTagKey {
			key = v
		}
		cur.tag(k, v)
	}
	if key == "" || key != name {
		return key, current{}
	}
	cur.exists = true
	return key, cur
}

func (c *acmClient) remember(name, arn string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.arns[name]; !ok && len(c.arns) >= acmARNCacheSize {
		for k := range c.arns { // any one: the cache only saves calls
			delete(c.arns, k)
			break
		}
	}
	c.arns[name] = arn
}

func (c *acmClient) forget(name string) {
	c.mu.Lock()
	delete(c.arns, name)
	c.mu.Unlock()
}

// tlsBundle is a kubernetes.io/tls Secret split as ImportCertificate
// takes it.
type tlsBundle struct {
	leaf, chain, key []byte
}

// parseTLSPush reads a whole-Secret push (a JSON object of the Secret's
// keys) as a certificate and its key. No error quotes the value.
func parseTLSPush(store string, value []byte) (tlsBundle, error) {
	var obj map[string]string
	if err := json.Unmarshal(value, &obj); err != nil || obj == nil {
		return tlsBundle{}, providers.Errorf(providers.Invalid, "%s: AWS Certificate Manager imports a certificate with its private key, so push the whole kubernetes.io/tls Secret (a data entry without secretKey), not one of its keys", store)
	}
	crt, key := obj["tls.crt"], obj["tls.key"]
	if crt == "" || key == "" {
		return tlsBundle{}, providers.Errorf(providers.Invalid, "%s: the Secret pushed to AWS Certificate Manager needs non-empty keys tls.crt and tls.key, as a kubernetes.io/tls Secret has", store)
	}
	var certs []*pem.Block
	for rest := []byte(crt); ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			certs = append(certs, b)
		}
	}
	if len(certs) == 0 {
		return tlsBundle{}, providers.Errorf(providers.Invalid, "%s: tls.crt of the Secret has no CERTIFICATE PEM block", store)
	}
	leaf, err := x509.ParseCertificate(certs[0].Bytes)
	if err != nil {
		return tlsBundle{}, providers.Errorf(providers.Invalid, "%s: the first certificate of tls.crt is not a valid X.509 certificate", store)
	}
	priv, ok := parsePrivateKey([]byte(key))
	if !ok {
		return tlsBundle{}, providers.Errorf(providers.Invalid, "%s: tls.key of the Secret is not an unencrypted PEM private key (PKCS#8, PKCS#1 or SEC 1)", store)
	}
	if pub, ok := priv.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(leaf.PublicKey) {
		return tlsBundle{}, providers.Errorf(providers.Invalid, "%s: tls.key of the Secret is not the key of the first certificate of tls.crt (the leaf must come first)", store)
	}
	bundle := tlsBundle{leaf: pem.EncodeToMemory(certs[0]), key: []byte(key)}
	for _, b := range certs[1:] {
		bundle.chain = append(bundle.chain, pem.EncodeToMemory(b)...)
	}
	return bundle, nil
}

// parsePrivateKey parses the first PEM block of data as a private key.
func parsePrivateKey(data []byte) (crypto.Signer, bool) {
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, false
	}
	var key any
	var err error
	switch b.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(b.Bytes)
	default:
		return nil, false
	}
	signer, ok := key.(crypto.Signer)
	return signer, err == nil && ok
}

// Push imports the Secret's certificate, or re-imports it into the
// certificate that has the remote key's tag, if the push's owner holds it.
func (c *acmClient) Push(ctx context.Context, p providers.Push) (string, error) {
	if !p.Owner.Valid() {
		return "", providers.Errorf(providers.Invalid, "a push to %s names no owner", c.store)
	}
	if p.Property != "" {
		return "", providers.Errorf(providers.Invalid, "%s: remoteRef.property %q: AWS Certificate Manager holds certificates, not JSON objects; remove property", c.store, p.Property)
	}
	name := c.key(p.Key)
	if err := c.checkRemoteKey(name); err != nil {
		return "", err
	}
	meta, err := parseACMMeta(c.store, p.Metadata)
	if err != nil {
		return "", err
	}
	bundle, err := parseTLSPush(c.store, p.Value)
	if err != nil {
		return "", err
	}
	found, err := c.find(ctx, name, true)
	if err != nil {
		return "", err
	}
	if !found.exists {
		in := &acm.ImportCertificateInput{Certificate: bundle.leaf, PrivateKey: bundle.key, Tags: append(acmTags(p.Owner, name), acmUserTags(meta)...)}
		if len(bundle.chain) > 0 {
			in.CertificateChain = bundle.chain
		}
		out, err := c.api.ImportCertificate(ctx, in)
		if err != nil {
			return "", c.callError(err, fmt.Sprintf("importing the certificate for remote key %q", name))
		}
		c.remember(name, aws.ToString(out.CertificateArn))
		return esv1alpha1.SecretPushResultPushed, nil
	}
	what := fmt.Sprintf("certificate %s (tag %s=%q)", found.arn, RemoteKeyTagKey, name)
	if !found.ownedBy(p.Owner) {
		switch {
		case p.IfNotExists:
			return esv1alpha1.SecretPushResultSkippedExists, nil
		case found.owned():
			return "", providers.Errorf(providers.NotOwner, "%s: %s belongs to another PushSecret; Veil never re-imports it for this one", c.store, what)
		case !p.Replace:
			return "", providers.Errorf(providers.Conflict, "%s: %s was not imported by Veil for a PushSecret (it has no tag %s=%s with an owner), so Veil will not re-import it; set the PushSecret's updatePolicy to Replace to take it over", c.store, what, ManagedByTagKey, ManagedByTagValue)
		}
		if _, err := c.api.AddTagsToCertificate(ctx, &acm.AddTagsToCertificateInput{CertificateArn: aws.String(found.arn), Tags: acmTags(p.Owner, name)}); err != nil {
			return "", c.callError(err, "tagging "+what+" with its owner")
		}
	} else if p.IfNotExists {
		return esv1alpha1.SecretPushResultSkippedExists, nil
	}
	// The metadata's tags, on a certificate that is now this push's: set
	// those it lacks or holds otherwise. Tags the metadata no longer names
	// stay, as on Secrets Manager and Parameter Store.
	set := meta.tagsToSet(found.current)
	if len(set) > 0 {
		if _, err := c.api.AddTagsToCertificate(ctx, &acm.AddTagsToCertificateInput{CertificateArn: aws.String(found.arn), Tags: acmUserTags(pushMeta{tags: set})}); err != nil {
			return "", c.callError(err, "tagging "+what+" with the push metadata's tags")
		}
	}
	got, err := c.api.GetCertificate(ctx, &acm.GetCertificateInput{CertificateArn: aws.String(found.arn)})
	if err != nil {
		return "", c.callError(err, "reading "+what+" before re-importing it")
	}
	if sameCertificate(got, bundle) {
		if len(set) > 0 {
			// New tags are a change, as they are on Secrets Manager.
			return esv1alpha1.SecretPushResultPushed, nil
		}
		return esv1alpha1.SecretPushResultUnchanged, nil
	}
	in := &acm.ImportCertificateInput{CertificateArn: aws.String(found.arn), Certificate: bundle.leaf, PrivateKey: bundle.key}
	if len(bundle.chain) > 0 {
		in.CertificateChain = bundle.chain
	}
	if _, err := c.api.ImportCertificate(ctx, in); err != nil {
		return "", c.callError(err, "re-importing "+what)
	}
	// A re-import keeps the tags on AWS; moto drops them. Tagging again
	// changes nothing on AWS and keeps the certificate findable on moto.
	if _, err := c.api.AddTagsToCertificate(ctx, &acm.AddTagsToCertificateInput{CertificateArn: aws.String(found.arn), Tags: append(acmTags(p.Owner, name), acmUserTags(meta)...)}); err != nil {
		return "", c.callError(err, "tagging "+what+" after re-importing it")
	}
	return esv1alpha1.SecretPushResultPushed, nil
}

// sameCertificate compares the certificates (not the key, which ACM does
// not return; a certificate binds its public key, so a new key comes with
// a new certificate). The chain ACM returns is the one imported, or the
// certificate itself when none was, and may have one more CA certificate
// appended (moto appends an Amazon CA, as it says AWS does); neither is a
// change. So a push that only drops the last certificate of the chain is
// not re-imported until the certificate itself changes.
func sameCertificate(got *acm.GetCertificateOutput, b tlsBundle) bool {
	leaf := pemDER([]byte(aws.ToString(got.Certificate)))
	if !slices.EqualFunc(leaf, pemDER(b.leaf), bytes.Equal) {
		return false
	}
	have, want := pemDER([]byte(aws.ToString(got.CertificateChain))), pemDER(b.chain)
	switch {
	case slices.EqualFunc(have, want, bytes.Equal):
		return true
	case len(want) == 0 && slices.EqualFunc(have, leaf, bytes.Equal):
		return true
	case len(have) == len(want)+1 && slices.EqualFunc(have[:len(want)], want, bytes.Equal):
		return true
	}
	return false
}

// pemDER is the DER of each PEM block of data, so that line endings and
// headers do not count as changes.
func pemDER(data []byte) [][]byte {
	var out [][]byte
	for {
		var blk *pem.Block
		if blk, data = pem.Decode(data); blk == nil {
			return out
		}
		out = append(out, blk.Bytes)
	}
}

// Delete deletes the certificate tagged with the remote key, if d.Owner
// holds it.
func (c *acmClient) Delete(ctx context.Context, d providers.Delete) error {
	if !d.Owner.Valid() {
		return providers.Errorf(providers.Invalid, "a delete from %s names no owner", c.store)
	}
	if d.Property != "" {
		return providers.Errorf(providers.Invalid, "%s: remoteRef.property %q: AWS Certificate Manager holds certificates, not JSON objects", c.store, d.Property)
	}
	name := c.key(d.Key)
	if err := c.checkRemoteKey(name); err != nil {
		return err
	}
	found, err := c.find(ctx, name, true)
	if err != nil || !found.exists {
		return err
	}
	what := fmt.Sprintf("certificate %s (tag %s=%q)", found.arn, RemoteKeyTagKey, name)
	switch {
	case found.owned() && !found.ownedBy(d.Owner):
		return providers.Errorf(providers.NotOwner, "%s: %s belongs to another PushSecret, so Veil will not delete it for this one", c.store, what)
	case !found.ownedBy(d.Owner):
		return providers.Errorf(providers.NotOwner, "%s: %s was not imported by Veil for a PushSecret (it has no tag %s=%s with an owner), so Veil will not delete it", c.store, what, ManagedByTagKey, ManagedByTagValue)
	}
	if _, err := c.api.DeleteCertificate(ctx, &acm.DeleteCertificateInput{CertificateArn: aws.String(found.arn)}); err != nil {
		switch f := classify(err); {
		case f.reason == providers.NotFound:
		case f.code == "ResourceInUseException":
			return providers.Wrap(providers.Conflict, err, "%s: %s is in use (by a load balancer, CloudFront distribution or other AWS resource), so ACM will not delete it; detach it, and Veil deletes it on its next try", c.store, what)
		default:
			return c.callError(err, "deleting "+what)
		}
	}
	c.forget(name)
	return nil
}

// checkRemoteKey refuses a remote key ACM cannot hold as a tag value.
func (c *acmClient) checkRemoteKey(name string) error {
	if name == "" || len(name) > acmMaxTagValue || !acmTagValuePattern.MatchString(name) {
		return providers.Errorf(providers.Invalid, "%s: remote key %q cannot be the value of ACM tag %s: it must be 1 to %d letters, digits, spaces and _.:/=+-@", c.store, name, RemoteKeyTagKey, acmMaxTagValue)
	}
	return nil
}

// acmMetaSpec is External Secrets Operator's PushSecretMetadata spec for
// AWS Certificate Manager: tags.
type acmMetaSpec struct {
	Tags map[string]string `json:"tags,omitempty"`
}

// parseACMMeta parses a push's metadata for ACM. ACM allows 50 tags on a
// certificate; Veil's owner tags and the remote key tag take 5 of them.
func parseACMMeta(store string, raw []byte) (pushMeta, error) {
	var spec acmMetaSpec
	if err := providers.ParsePushMetadata(raw, store, &spec); err != nil {
		return pushMeta{}, err
	}
	if len(spec.Tags) > maxUserTags-1 {
		return pushMeta{}, providers.Errorf(providers.Invalid, "%s: the push metadata has %d tags, more than the %d AWS Certificate Manager leaves besides Veil's owner and remote key tags", store, len(spec.Tags), maxUserTags-1)
	}
	if err := checkTags(store, spec.Tags); err != nil {
		return pushMeta{}, err
	}
	return pushMeta{tags: spec.Tags}, nil
}

// acmUserTags are the metadata's tags, sorted by key.
func acmUserTags(m pushMeta) []acmtypes.Tag {
	var out []acmtypes.Tag
	for _, t := range m.userTags() {
		out = append(out, acmtypes.Tag{Key: aws.String(t[0]), Value: aws.String(t[1])})
	}
	return out
}

func acmTags(o providers.Owner, name string) []acmtypes.Tag {
	tags := []acmtypes.Tag{{Key: aws.String(RemoteKeyTagKey), Value: aws.String(name)}}
	for _, t := range ownerTags(o) {
		tags = append(tags, acmtypes.Tag{Key: aws.String(t[0]), Value: aws.String(t[1])})
	}
	return tags
}

// limitedHTTPClient fails a response whose body is longer than max
// rather than letting the SDK read it all.
type limitedHTTPClient struct {
	next aws.HTTPClient
	max  int64
}

func (l *limitedHTTPClient) Do(req *http.Request) (*http.Response, error) {
	resp, err := l.next.Do(req)
	if err != nil || resp.Body == nil {
		return resp, err
	}
	if resp.ContentLength > l.max {
		resp.Body.Close()
		return nil, fmt.Errorf("the response is %d bytes, more than the %d Veil reads from ACM", resp.ContentLength, l.max)
	}
	resp.Body = &limitedBody{ReadCloser: resp.Body, left: l.max}
	return resp, nil
}

var errResponseTooLarge = errors.New("the response is larger than Veil reads from ACM")

type limitedBody struct {
	io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// One more byte tells a body of exactly max from a longer one.
		var one [1]byte
		if n, _ := b.ReadCloser.Read(one[:]); n > 0 {
			return 0, errResponseTooLarge
		}
		return b.ReadCloser.Read(p)
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	return n, err
}
