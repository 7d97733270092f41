package aws

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/aws/smithy-go"

	"github.com/veil-dev/veil/pkg/providers"
)

// Secrets Manager limits: BatchGetSecretValue takes at most 20 secret IDs,
// ListSecrets returns at most 100 secrets a page.
const (
	batchGetSecretsMax = 20
	listSecretsMax     = 100
)

type secretsManagerClient struct {
	base
	api                *secretsmanager.Client
	recoveryWindowDays int64
	forceDelete        bool
}

var _ providers.Client = &secretsManagerClient{}

var uuidPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// secretVersion reads remoteRef.version: a UUID, which is what Secrets
// Manager makes version IDs of, or "uuid/<id>" (External Secrets
// Operator's spelling, for IDs a client chose) is a version ID; anything
// else is a staging label such as AWSPREVIOUS.
func secretVersion(v string) (id, stage *string) {
	switch {
	case v == "":
		return nil, nil
	case strings.HasPrefix(v, "uuid/"):
		return aws.String(strings.TrimPrefix(v, "uuid/")), nil
	case uuidPattern.MatchString(v):
		return aws.String(v), nil
	}
	return nil, aws.String(v)
}

func (c *secretsManagerClient) Get(ctx context.Context, ref providers.Ref) (providers.Value, error) {
	in := &secretsmanager.GetSecretValueInput{SecretId: aws.String(c.key(ref.Key))}
	in.VersionId, in.VersionStage = secretVersion(ref.Version)
	out, err := c.api.GetSecretValue(ctx, in)
	if err != nil {
		if scheduledForDeletion(err) {
			// A deleted secret stays, unreadable, for its recovery window;
			// to a reader it is gone, as it is to External Secrets Operator.
			return providers.Value{}, providers.Errorf(providers.NotFound, "%s: %s: it is scheduled for deletion (restore it with RestoreSecret to read it again)", c.store, reading("secret", ref))
		}
		return providers.Value{}, c.callError(err, reading("secret", ref))
	}
	return secretValue(out.SecretString, out.SecretBinary, out.VersionId), nil
}

func secretValue(s *string, b []byte, version *string) providers.Value {
	if s != nil {
		return providers.Value{Data: []byte(*s), Version: aws.ToString(version)}
	}
	return providers.Value{Data: b, Version: aws.ToString(version)}
}

// Find lists the secrets whose names and tags match — narrowed by AWS with
// a name-prefix and a tag filter, then matched exactly here, because AWS
// filters match prefixes — and reads their values 20 at a time with
// BatchGetSecretValue. ListSecrets comes first because BatchGetSecretValue
// returns no tags, so it could not tell env=prod from env=production, and
// because it keeps Veil from fetching values it would throw away.
func (c *secretsManagerClient) Find(ctx context.Context, f providers.Find) (map[string]providers.Value, error) {
	re, err := regexp.Compile(f.NameRegexp)
	if err != nil {
		return nil, providers.Errorf(providers.Invalid, "find.name.regexp %q is not a valid regular expression", f.NameRegexp)
	}
	var filters []smtypes.Filter
	if p := c.prefix + f.Path; p != "" {
		filters = append(filters, smtypes.Filter{Key: smtypes.FilterNameStringTypeName, Values: []string{p}})
	}
	if len(f.Tags) > 0 {
		k := sortedKeys(f.Tags)[0]
		filters = append(filters,
			smtypes.Filter{Key: smtypes.FilterNameStringTypeTagKey, Values: []string{k}},
			smtypes.Filter{Key: smtypes.FilterNameStringTypeTagValue, Values: []string{f.Tags[k]}})
	}

	var ids []string
	listed := 0
	pages := secretsmanager.NewListSecretsPaginator(c.api, &secretsmanager.ListSecretsInput{Filters: filters, MaxResults: aws.Int32(listSecretsMax)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, c.callError(err, "listing secrets for dataFrom.find")
		}
		if listed += len(page.SecretList); listed > maxFindListed {
			return nil, findTooBroad(c.store, f, "would list more than %d secrets", maxFindListed)
		}
		for _, s := range page.SecretList {
			key, ok := strings.CutPrefix(aws.ToString(s.Name), c.prefix)
			if ok && strings.HasPrefix(key, f.Path) && re.MatchString(key) && hasTags(s.Tags, f.Tags) {
				ids = append(ids, aws.ToString(s.ARN))
			}
		}
		if len(ids) > maxFindResults {
			return nil, findTooBroad(c.store, f, "matches more than %d secrets", maxFindResults)
		}
	}

	out := make(map[string]providers.Value, len(ids))
	for start := 0; start < len(ids); start += batchGetSecretsMax {
		in := &secretsmanager.BatchGetSecretValueInput{SecretIdList: ids[start:min(start+batchGetSecretsMax, len(ids))]}
		for {
			page, err := c.api.BatchGetSecretValue(ctx, in)
			if err != nil {
				return nil, c.callError(err, "reading the secrets dataFrom.find matched")
			}
			for _, e := range page.Errors {
				// A secret deleted since it was listed no longer matches.
				if aws.ToString(e.ErrorCode) == "ResourceNotFoundException" {
					continue
				}
				return nil, c.entryError(e, "BatchGetSecretValue")
			}
			for _, v := range page.SecretValues {
				key, _ := strings.CutPrefix(aws.ToString(v.Name), c.prefix)
				out[key] = secretValue(v.SecretString, v.SecretBinary, v.VersionId)
			}
			if aws.ToString(page.NextToken) == "" {
				break
			}
			in.NextToken = page.NextToken
		}
	}
	return out, nil
}

// entryError reports the failure of one secret of a batch, which AWS
// returns as an entry rather than as an error of the call.
func (c *secretsManagerClient) entryError(e smtypes.APIErrorType, op string) error {
	f := failure{code: aws.ToString(e.ErrorCode), service: "Secrets Manager", op: op}
	doing := fmt.Sprintf("reading secret %q, which dataFrom.find matched", strings.TrimPrefix(aws.ToString(e.SecretId), c.prefix))
	cause := fmt.Errorf("%s: %s", f.code, aws.ToString(e.Message))
	switch {
	case signatureCodes[f.code], unknownKeyCodes[f.code], expiredCodes[f.code], deniedCodes[f.code]:
		return providers.Wrap(providers.Forbidden, cause, "%s: AWS refused %s %s: %s", c.store, c.identity, doing, f.hint())
	case throttled(f.code):
		return providers.Wrap(providers.Unavailable, cause, "%s: AWS throttled %s; retry later", c.store, doing)
	}
	return providers.Wrap(providers.Unavailable, cause, "%s: AWS failed %s", c.store, doing)
}

func hasTags(have []smtypes.Tag, want map[string]string) bool {
	for k, v := range want {
		found := false
		for _, t := range have {
			if aws.ToString(t.Key) == k && aws.ToString(t.Value) == v {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (c *secretsManagerClient) Push(ctx context.Context, p providers.Push) (string, error) {
	return push(ctx, &c.base, secretsManagerRemote{c}, p)
}

func (c *secretsManagerClient) Delete(ctx context.Context, d providers.Delete) error {
	return remove(ctx, &c.base, secretsManagerRemote{c}, d)
}

// secretsManagerRemote is the Secrets Manager side of push and remove.
type secretsManagerRemote struct{ c *secretsManagerClient }

func (r secretsManagerRemote) kind() string { return "secret" }

func (r secretsManagerRemote) read(ctx context.Context, name string) (current, error) {
	desc, err := r.c.api.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String(name)})
	if err != nil {
		if classify(err).reason == providers.NotFound {
			return current{}, nil
		}
		return current{}, r.c.callError(err, fmt.Sprintf("looking up secret %q", name))
	}
	if desc.DeletedDate != nil {
		return current{}, providers.Errorf(providers.Conflict, "%s: secret %q is scheduled for deletion; restore it (RestoreSecret) or wait until it is gone", r.c.store, name)
	}
	cur := current{exists: true}
	for _, t := range desc.Tags {
		cur.tag(aws.ToString(t.Key), aws.ToString(t.Value))
	}
	v, err := r.c.api.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(name)})
	switch {
	case err == nil:
		cur.value, cur.hasValue = secretValue(v.SecretString, v.SecretBinary, nil).Data, true
		cur.binary = v.SecretString == nil && v.SecretBinary != nil
	case classify(err).reason == providers.NotFound:
		// A secret created without a value has no AWSCURRENT version.
	default:
		return current{}, r.c.callError(err, fmt.Sprintf("reading secret %q before writing it", name))
	}
	return cur, nil
}

func (r secretsManagerRemote) parseMeta(raw []byte) (pushMeta, error) {
	return parseSMMeta(r.c.store, raw)
}

// create makes the secret with the metadata's description, KMS key,
// replica regions and tags, as External Secrets Operator does; those but
// the tags are set only here, when the secret is created.
func (r secretsManagerRemote) create(ctx context.Context, name string, value []byte, o providers.Owner, meta pushMeta) error {
	in := &secretsmanager.CreateSecretInput{Name: aws.String(name), Tags: secretTags(o)}
	for _, t := range meta.userTags() {
		in.Tags = append(in.Tags, smtypes.Tag{Key: aws.String(t[0]), Value: aws.String(t[1])})
	}
	if meta.description != "" {
		in.Description = aws.String(meta.description)
	}
	if meta.kmsKeyID != "" {
		in.KmsKeyId = aws.String(meta.kmsKeyID)
	}
	for _, region := range meta.replicas {
		rr := smtypes.ReplicaRegionType{Region: aws.String(region)}
		if meta.kmsKeyID != "" {
			rr.KmsKeyId = aws.String(meta.kmsKeyID)
		}
		in.AddReplicaRegions = append(in.AddReplicaRegions, rr)
	}
	var err error
	if in.SecretString, in.SecretBinary, err = r.payload(name, value, meta); err != nil {
		return err
	}
	if _, err := r.c.api.CreateSecret(ctx, in); err != nil {
		return r.c.callError(err, fmt.Sprintf("creating secret %q", name))
	}
	return nil
}

// payload is the value as SecretString or SecretBinary: as the metadata's
// secretPushFormat says, or by default text as SecretString.
func (r secretsManagerRemote) payload(name string, value []byte, meta pushMeta) (*string, []byte, error) {
	switch meta.format {
	case "string":
		if !utf8.Valid(value) {
			return nil, nil, providers.Errorf(providers.Invalid, "%s: push metadata secretPushFormat string, but the value for secret %q is not UTF-8 text; use binary", r.c.store, name)
		}
		return aws.String(string(value)), nil, nil
	case "binary":
		return nil, value, nil
	}
	s, b := secretPayload(value)
	return s, b, nil
}

func (r secretsManagerRemote) own(ctx context.Context, name string, o providers.Owner) error {
	if _, err := r.c.api.TagResource(ctx, &secretsmanager.TagResourceInput{SecretId: aws.String(name), Tags: secretTags(o)}); err != nil {
		return r.c.callError(err, fmt.Sprintf("tagging secret %q with its owner", name))
	}
	return nil
}

func (r secretsManagerRemote) retag(ctx context.Context, name string, tags map[string]string) error {
	in := &secretsmanager.TagResourceInput{SecretId: aws.String(name)}
	for _, t := range (pushMeta{tags: tags}).userTags() {
		in.Tags = append(in.Tags, smtypes.Tag{Key: aws.String(t[0]), Value: aws.String(t[1])})
	}
	if _, err := r.c.api.TagResource(ctx, in); err != nil {
		return r.c.callError(err, fmt.Sprintf("tagging secret %q as its push metadata says", name))
	}
	return nil
}

func secretTags(o providers.Owner) []smtypes.Tag {
	var tags []smtypes.Tag
	for _, t := range ownerTags(o) {
		tags = append(tags, smtypes.Tag{Key: aws.String(t[0]), Value: aws.String(t[1])})
	}
	return tags
}

func (r secretsManagerRemote) update(ctx context.Context, name string, value []byte, _ current, meta pushMeta) error {
	in := &secretsmanager.PutSecretValueInput{SecretId: aws.String(name)}
	var err error
	if in.SecretString, in.SecretBinary, err = r.payload(name, value, meta); err != nil {
		return err
	}
	if _, err := r.c.api.PutSecretValue(ctx, in); err != nil {
		return r.c.callError(err, fmt.Sprintf("writing secret %q", name))
	}
	return nil
}

func (r secretsManagerRemote) delete(ctx context.Context, name string) error {
	in := &secretsmanager.DeleteSecretInput{SecretId: aws.String(name)}
	switch {
	case r.c.forceDelete:
		in.ForceDeleteWithoutRecovery = aws.Bool(true)
	case r.c.recoveryWindowDays > 0:
		in.RecoveryWindowInDays = aws.Int64(r.c.recoveryWindowDays)
	}
	if _, err := r.c.api.DeleteSecret(ctx, in); err != nil {
		if classify(err).reason == providers.NotFound {
			return nil
		}
		return r.c.callError(err, fmt.Sprintf("deleting secret %q", name))
	}
	return nil
}

// secretPayload stores text as SecretString, which the console and most
// tools show, and anything else as SecretBinary.
func secretPayload(value []byte) (*string, []byte) {
	if utf8.Valid(value) {
		return aws.String(string(value)), nil
	}
	return nil, value
}

// maxFindResults and maxFindListed are every provider's bounds of one
// find; variables so that tests can lower them.
var (
	maxFindResults = providers.MaxFindResults
	maxFindListed  = providers.MaxFindListed
)

// findTooBroad refuses a find over the bounds every provider keeps
// (maxFindResults, maxFindListed).
func findTooBroad(store string, f providers.Find, format string, n int) error {
	return providers.Errorf(providers.Invalid, "dataFrom.find under %q in %s %s; narrow find.path, find.name or find.tags", f.Path, store, fmt.Sprintf(format, n))
}

// scheduledForDeletion says whether AWS refused a read because the secret
// was deleted with a recovery window: Secrets Manager answers
// InvalidRequestException, and only its message says why ("... because it
// was marked for deletion"; moto says "... currently marked deleted").
func scheduledForDeletion(err error) bool {
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "InvalidRequestException" {
		return false
	}
	msg := ae.ErrorMessage()
	return strings.Contains(msg, "marked for deletion") || strings.Contains(msg, "marked deleted")
}

// listSecretsNameValues is how many values one ListSecrets name filter
// takes.
const listSecretsNameValues = 10

var _ providers.VersionLister = &secretsManagerClient{}

func (c *secretsManagerClient) VersionsPerCall() int { return listSecretsNameValues }

// Versions names each secret's current version by its last change
// (LastChangedDate, which PutSecretValue and UpdateSecret move) and the ID
// of its AWSCURRENT version, with ListSecrets filtered by name, ten names a
// call: no value is read, and the cost grows with the keys asked about,
// not with the secrets in the account. A name filter matches prefixes, so
// the answers are narrowed to the names asked for.
func (c *secretsManagerClient) Versions(ctx context.Context, keys []string) (map[string]providers.KeyVersion, error) {
	want, names, err := c.versionNames(keys)
	if err != nil {
		return nil, err
	}
	out := make(map[string]providers.KeyVersion, len(names))
	for start := 0; start < len(names); start += listSecretsNameValues {
		batch := names[start:min(start+listSecretsNameValues, len(names))]
		in := &secretsmanager.ListSecretsInput{
			Filters:    []smtypes.Filter{{Key: smtypes.FilterNameStringTypeName, Values: batch}},
			MaxResults: aws.Int32(listSecretsMax),
		}
		listed := 0
		pages := secretsmanager.NewListSecretsPaginator(c.api, in)
		for pages.HasMorePages() {
			page, err := pages.NextPage(ctx)
			if err != nil {
				return nil, c.callError(err, "listing secrets to detect changes")
			}
			// Prefix matches of short names could list much of an
			// account; past a bound the rest is left to refresh.
			if listed += len(page.SecretList); listed > maxFindListed {
				return nil, providers.Errorf(providers.Invalid, "%s: the names asked about match more than %d secrets as prefixes; changes of those keys are left to their refresh interval", c.store, maxFindListed)
			}
			for _, s := range page.SecretList {
				key, ok := want[aws.ToString(s.Name)]
				if !ok || s.DeletedDate != nil {
					continue
				}
				var current string
				for id, stages := range s.SecretVersionsToStages {
					if slices.Contains(stages, "AWSCURRENT") {
						current = id
					}
				}
				changed := aws.ToTime(s.LastChangedDate)
				out[key] = providers.KeyVersion{ID: changed.UTC().Format(time.RFC3339Nano) + "/" + current, Changed: changed}
			}
		}
	}
	return out, nil
}
