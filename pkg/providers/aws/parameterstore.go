package aws

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/veil-dev/veil/pkg/providers"
)

// Parameter Store limits: GetParameters takes at most 10 names,
// GetParametersByPath returns at most 10 parameters a page and
// DescribeParameters at most 50.
const (
	getParametersMax      = 10
	parametersByPathMax   = 10
	describeParametersMax = 50
)

type parameterStoreClient struct {
	base
	api *ssm.Client
}

var (
	_ providers.Client      = &parameterStoreClient{}
	_ providers.BatchGetter = &parameterStoreClient{}
)

// name is the GetParameter name of ref: remoteRef.version becomes a
// selector, a version number ("3") or a label ("prod").
func (c *parameterStoreClient) name(ref providers.Ref) string {
	if ref.Version != "" {
		return c.key(ref.Key) + ":" + ref.Version
	}
	return c.key(ref.Key)
}

func (c *parameterStoreClient) Get(ctx context.Context, ref providers.Ref) (providers.Value, error) {
	out, err := c.api.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(c.name(ref)), WithDecryption: aws.Bool(true)})
	if err != nil {
		return providers.Value{}, c.callError(err, reading("parameter", ref))
	}
	return parameterValue(out.Parameter), nil
}

func parameterValue(p *ssmtypes.Parameter) providers.Value {
	return providers.Value{Data: []byte(aws.ToString(p.Value)), Version: strconv.FormatInt(p.Version, 10)}
}

// GetBatch reads latest values ten at a time with GetParameters. A
// response names a parameter without the selector it was asked with, so
// versioned refs, and ARNs, which come back as names, are read one by one.
func (c *parameterStoreClient) GetBatch(ctx context.Context, refs []providers.Ref) (map[providers.Ref]providers.Value, error) {
	out := make(map[providers.Ref]providers.Value, len(refs))
	byName := map[string]providers.Ref{}
	var names []string
	for _, ref := range refs {
		if ref.Version != "" || strings.HasPrefix(ref.Key, "arn:") {
			v, err := c.Get(ctx, ref)
			if providers.ReasonOf(err) == providers.NotFound {
				continue
			}
			if err != nil {
				return nil, err
			}
			out[ref] = v
			continue
		}
		if _, dup := byName[c.key(ref.Key)]; !dup {
			byName[c.key(ref.Key)] = ref
			names = append(names, c.key(ref.Key))
		}
	}
	got, err := c.getParameters(ctx, names, "reading parameters")
	if err != nil {
		return nil, err
	}
	for name, v := range got {
		out[byName[name]] = v
	}
	return out, nil
}

// getParameters reads names, ten a call; missing names are left out.
func (c *parameterStoreClient) getParameters(ctx context.Context, names []string, doing string) (map[string]providers.Value, error) {
	out := make(map[string]providers.Value, len(names))
	for start := 0; start < len(names); start += getParametersMax {
		page, err := c.api.GetParameters(ctx, &ssm.GetParametersInput{
			Names:          names[start:min(start+getParametersMax, len(names))],
			WithDecryption: aws.Bool(true),
		})
		if err != nil {
			return nil, c.callError(err, doing)
		}
		for i := range page.Parameters {
			out[aws.ToString(page.Parameters[i].Name)] = parameterValue(&page.Parameters[i])
		}
	}
	return out, nil
}

// Find reads a hierarchy with GetParametersByPath when only a path and a
// name are asked for. Tags, or a path that is not a hierarchy, need
// DescribeParameters, which returns names only; their values are then read
// ten at a time.
func (c *parameterStoreClient) Find(ctx context.Context, f providers.Find) (map[string]providers.Value, error) {
	re, err := regexp.Compile(f.NameRegexp)
	if err != nil {
		return nil, providers.Errorf(providers.Invalid, "find.name.regexp %q is not a valid regular expression", f.NameRegexp)
	}
	path := c.prefix + f.Path
	matches := func(name string) (string, bool) {
		key, ok := strings.CutPrefix(name, c.prefix)
		return key, ok && re.MatchString(key)
	}
	out := map[string]providers.Value{}

	if len(f.Tags) == 0 && strings.HasPrefix(path, "/") {
		pages := ssm.NewGetParametersByPathPaginator(c.api, &ssm.GetParametersByPathInput{
			Path: aws.String(path), Recursive: aws.Bool(true), WithDecryption: aws.Bool(true), MaxResults: aws.Int32(parametersByPathMax),
		})
		listed := 0
		for pages.HasMorePages() {
			page, err := pages.NextPage(ctx)
			if err != nil {
				return nil, c.callError(err, fmt.Sprintf("reading parameters under %q for dataFrom.find", f.Path))
			}
			if listed += len(page.Parameters); listed > maxFindListed {
				return nil, findTooBroad(c.store, f, "would read more than %d parameters", maxFindListed)
			}
			for i := range page.Parameters {
				if key, ok := matches(aws.ToString(page.Parameters[i].Name)); ok {
					out[key] = parameterValue(&page.Parameters[i])
				}
			}
			if len(out) > maxFindResults {
				return nil, findTooBroad(c.store, f, "matches more than %d parameters", maxFindResults)
			}
		}
		return out, nil
	}

	var filters []ssmtypes.ParameterStringFilter
	switch {
	case strings.HasPrefix(path, "/"):
		filters = append(filters, ssmtypes.ParameterStringFilter{Key: aws.String("Path"), Option: aws.String("Recursive"), Values: []string{path}})
	case path != "":
		filters = append(filters, ssmtypes.ParameterStringFilter{Key: aws.String("Name"), Option: aws.String("BeginsWith"), Values: []string{path}})
	}
	for _, k := range sortedKeys(f.Tags) {
		filters = append(filters, ssmtypes.ParameterStringFilter{Key: aws.String("tag:" + k), Option: aws.String("Equals"), Values: []string{f.Tags[k]}})
	}
	var names []string
	listed := 0
	pages := ssm.NewDescribeParametersPaginator(c.api, &ssm.DescribeParametersInput{ParameterFilters: filters, MaxResults: aws.Int32(describeParametersMax)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, c.callError(err, "listing parameters for dataFrom.find")
		}
		if listed += len(page.Parameters); listed > maxFindListed {
			return nil, findTooBroad(c.store, f, "would list more than %d parameters", maxFindListed)
		}
		for _, p := range page.Parameters {
			if _, ok := matches(aws.ToString(p.Name)); ok {
				names = append(names, aws.ToString(p.Name))
			}
		}
		if len(names) > maxFindResults {
			return nil, findTooBroad(c.store, f, "matches more than %d parameters", maxFindResults)
		}
	}
	got, err := c.getParameters(ctx, names, "reading the parameters dataFrom.find matched")
	if err != nil {
		return nil, err
	}
	for name, v := range got {
		key, _ := strings.CutPrefix(name, c.prefix)
		out[key] = v
	}
	return out, nil
}

func (c *parameterStoreClient) Push(ctx context.Context, p providers.Push) (string, error) {
	return push(ctx, &c.base, parameterStoreRemote{c}, p)
}

func (c *parameterStoreClient) Delete(ctx context.Context, d providers.Delete) error {
	return remove(ctx, &c.base, parameterStoreRemote{c}, d)
}

// parameterStoreRemote is the Parameter Store side of push and remove.
type parameterStoreRemote struct{ c *parameterStoreClient }

func (r parameterStoreRemote) kind() string { return "parameter" }

func (r parameterStoreRemote) read(ctx context.Context, name string) (current, error) {
	out, err := r.c.api.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(name), WithDecryption: aws.Bool(true)})
	if err != nil {
		if classify(err).reason == providers.NotFound {
			return current{}, nil
		}
		return current{}, r.c.callError(err, fmt.Sprintf("reading parameter %q before writing it", name))
	}
	cur := current{exists: true, hasValue: true, value: []byte(aws.ToString(out.Parameter.Value)), paramType: string(out.Parameter.Type)}
	tags, err := r.c.api.ListTagsForResource(ctx, &ssm.ListTagsForResourceInput{ResourceType: ssmtypes.ResourceTypeForTaggingParameter, ResourceId: aws.String(name)})
	if err != nil {
		return current{}, r.c.callError(err, fmt.Sprintf("reading the tags of parameter %q", name))
	}
	for _, t := range tags.TagList {
		cur.tag(aws.ToString(t.Key), aws.ToString(t.Value))
	}
	return cur, nil
}

func (r parameterStoreRemote) parseMeta(raw []byte) (pushMeta, error) {
	return parsePSMeta(r.c.store, raw)
}

// create makes a SecureString (Veil pushes secrets) unless the metadata's
// secretType says otherwise, with its KMS key, tier, policies,
// description and tags.
func (r parameterStoreRemote) create(ctx context.Context, name string, value []byte, o providers.Owner, meta pushMeta) error {
	if err := r.text(name, value); err != nil {
		return err
	}
	in := &ssm.PutParameterInput{Name: aws.String(name), Value: aws.String(string(value)), Type: ssmtypes.ParameterTypeSecureString, Tags: parameterTags(o)}
	if meta.paramType != "" {
		in.Type = ssmtypes.ParameterType(meta.paramType)
	}
	for _, t := range meta.userTags() {
		in.Tags = append(in.Tags, ssmtypes.Tag{Key: aws.String(t[0]), Value: aws.String(t[1])})
	}
	r.withMeta(in, meta)
	if _, err := r.c.api.PutParameter(ctx, in); err != nil {
		return r.c.callError(err, fmt.Sprintf("creating parameter %q", name))
	}
	return nil
}

// withMeta sets what PutParameter takes of meta besides type and tags.
func (r parameterStoreRemote) withMeta(in *ssm.PutParameterInput, meta pushMeta) {
	if meta.kmsKeyID != "" && in.Type == ssmtypes.ParameterTypeSecureString {
		in.KeyId = aws.String(meta.kmsKeyID)
	}
	if meta.tier != "" {
		in.Tier = ssmtypes.ParameterTier(meta.tier)
	}
	if meta.policies != "" {
		in.Policies = aws.String(meta.policies)
	}
	if meta.description != "" {
		in.Description = aws.String(meta.description)
	}
}

func (r parameterStoreRemote) own(ctx context.Context, name string, o providers.Owner) error {
	_, err := r.c.api.AddTagsToResource(ctx, &ssm.AddTagsToResourceInput{
		ResourceType: ssmtypes.ResourceTypeForTaggingParameter, ResourceId: aws.String(name), Tags: parameterTags(o),
	})
	if err != nil {
		return r.c.callError(err, fmt.Sprintf("tagging parameter %q with its owner", name))
	}
	return nil
}

func (r parameterStoreRemote) retag(ctx context.Context, name string, tags map[string]string) error {
	in := &ssm.AddTagsToResourceInput{ResourceType: ssmtypes.ResourceTypeForTaggingParameter, ResourceId: aws.String(name)}
	for _, t := range (pushMeta{tags: tags}).userTags() {
		in.Tags = append(in.Tags, ssmtypes.Tag{Key: aws.String(t[0]), Value: aws.String(t[1])})
	}
	if _, err := r.c.api.AddTagsToResource(ctx, in); err != nil {
		return r.c.callError(err, fmt.Sprintf("tagging parameter %q as its push metadata says", name))
	}
	return nil
}

func parameterTags(o providers.Owner) []ssmtypes.Tag {
	var tags []ssmtypes.Tag
	for _, t := range ownerTags(o) {
		tags = append(tags, ssmtypes.Tag{Key: aws.String(t[0]), Value: aws.String(t[1])})
	}
	return tags
}

// update overwrites a parameter, keeping its type unless the metadata
// names one.
func (r parameterStoreRemote) update(ctx context.Context, name string, value []byte, cur current, meta pushMeta) error {
	if err := r.text(name, value); err != nil {
		return err
	}
	in := &ssm.PutParameterInput{
		Name: aws.String(name), Value: aws.String(string(value)), Type: ssmtypes.ParameterType(cur.paramType), Overwrite: aws.Bool(true),
	}
	if meta.paramType != "" {
		in.Type = ssmtypes.ParameterType(meta.paramType)
	}
	r.withMeta(in, meta)
	if _, err := r.c.api.PutParameter(ctx, in); err != nil {
		return r.c.callError(err, fmt.Sprintf("writing parameter %q", name))
	}
	return nil
}

func (r parameterStoreRemote) delete(ctx context.Context, name string) error {
	if _, err := r.c.api.DeleteParameter(ctx, &ssm.DeleteParameterInput{Name: aws.String(name)}); err != nil {
		if classify(err).reason == providers.NotFound {
			return nil
		}
		return r.c.callError(err, fmt.Sprintf("deleting parameter %q", name))
	}
	return nil
}

// text refuses values Parameter Store cannot hold: it stores strings.
func (r parameterStoreRemote) text(name string, value []byte) error {
	if !utf8.Valid(value) {
		return providers.Errorf(providers.Invalid, "%s: the value for parameter %q is not text, and Parameter Store holds text only; encode it (base64) before pushing it", r.c.store, name)
	}
	return nil
}

var _ providers.VersionLister = &parameterStoreClient{}

func (c *parameterStoreClient) VersionsPerCall() int { return describeParametersMax }

// Versions names each parameter's current version by its version number
// and last modification, with DescribeParameters filtered to the names
// asked for, fifty a call: no value is read, and the cost grows with the
// keys asked about, not with the parameters in the account.
func (c *parameterStoreClient) Versions(ctx context.Context, keys []string) (map[string]providers.KeyVersion, error) {
	want, names, err := c.versionNames(keys)
	if err != nil {
		return nil, err
	}
	out := make(map[string]providers.KeyVersion, len(names))
	for start := 0; start < len(names); start += describeParametersMax {
		batch := names[start:min(start+describeParametersMax, len(names))]
		pages := ssm.NewDescribeParametersPaginator(c.api, &ssm.DescribeParametersInput{
			ParameterFilters: []ssmtypes.ParameterStringFilter{{Key: aws.String("Name"), Option: aws.String("Equals"), Values: batch}},
			MaxResults:       aws.Int32(describeParametersMax),
		})
		for pages.HasMorePages() {
			page, err := pages.NextPage(ctx)
			if err != nil {
				return nil, c.callError(err, "describing parameters to detect changes")
			}
			for _, p := range page.Parameters {
				if key, ok := want[aws.ToString(p.Name)]; ok {
					changed := aws.ToTime(p.LastModifiedDate)
					out[key] = providers.KeyVersion{ID: strconv.FormatInt(p.Version, 10) + "/" + changed.UTC().Format(time.RFC3339Nano), Changed: changed}
				}
			}
		}
	}
	return out, nil
}
