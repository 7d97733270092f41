package aws

import (
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/veil-dev/veil/pkg/providers"
)

// Push metadata, as External Secrets Operator's AWS providers take it
// (kind PushSecretMetadata, see providers.ParsePushMetadata). Each field is
// checked against AWS's own bounds before anything is written, and a field
// ESO has that Veil does not (resourcePolicy, encodeAsDecoded) is refused,
// not dropped. Tags may not use Veil's own keys, which record the owner.

// pushMeta is the metadata of one push, parsed.
type pushMeta struct {
	tags        map[string]string
	description string
	kmsKeyID    string
	// format (Secrets Manager): "string", "binary", or "" (text as
	// SecretString, anything else as SecretBinary).
	format   string
	replicas []string
	// Parameter Store.
	paramType string
	tier      string
	policies  string
}

// smMetaSpec is ESO's Secrets Manager PushSecretMetadata spec, less what
// Veil does not take.
type smMetaSpec struct {
	Tags                 map[string]string `json:"tags,omitempty"`
	Description          string            `json:"description,omitempty"`
	SecretPushFormat     string            `json:"secretPushFormat,omitempty"`
	KMSKeyID             string            `json:"kmsKeyId,omitempty"`
	ReplicationLocations []string          `json:"replicationLocations,omitempty"`
}

// psMetaSpec is ESO's Parameter Store PushSecretMetadata spec, less what
// Veil does not take.
type psMetaSpec struct {
	SecretType  string            `json:"secretType,omitempty"`
	KMSKeyID    string            `json:"kmsKeyID,omitempty"`
	Tier        *psTier           `json:"tier,omitempty"`
	Tags        map[string]string `json:"tags,omitempty"`
	Description string            `json:"description,omitempty"`
}

type psTier struct {
	Type     string          `json:"type,omitempty"`
	Policies json.RawMessage `json:"policies,omitempty"`
}

// Bounds, AWS's own.
const (
	maxUserTags          = 50 - 4 // AWS allows 50; Veil's owner tags take 4
	maxTagKey            = 128
	maxTagValue          = 256
	maxKMSKeyID          = 2048
	maxSMDescription     = 2048
	maxPSDescription     = 1024
	maxReplicas          = 10
	maxParameterPolicies = 4096
)

var awsRegion = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]$`)

// checkTags bounds tags and keeps Veil's own keys and AWS's "aws:" out.
func checkTags(store string, tags map[string]string) error {
	if len(tags) > maxUserTags {
		return providers.Errorf(providers.Invalid, "%s: the push metadata has %d tags, more than the %d AWS leaves besides Veil's owner tags", store, len(tags), maxUserTags)
	}
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		v := tags[k]
		switch {
		case k == "" || len(k) > maxTagKey:
			return providers.Errorf(providers.Invalid, "%s: push metadata tag key %.140q must be 1 to %d characters", store, k, maxTagKey)
		case len(v) > maxTagValue:
			return providers.Errorf(providers.Invalid, "%s: push metadata tag %q has a value of %d characters, more than %d", store, k, len(v), maxTagValue)
		case k == ManagedByTagKey || strings.HasPrefix(k, "veil.dev/"):
			return providers.Errorf(providers.Invalid, "%s: push metadata tag %q is Veil's own (it records which PushSecret owns the key); use another key", store, k)
		case strings.HasPrefix(strings.ToLower(k), "aws:"):
			return providers.Errorf(providers.Invalid, "%s: push metadata tag %q: the prefix aws: is AWS's own", store, k)
		}
	}
	return nil
}

func parseSMMeta(store string, raw []byte) (pushMeta, error) {
	var spec smMetaSpec
	if err := providers.ParsePushMetadata(raw, store, &spec); err != nil {
		return pushMeta{}, err
	}
	if err := checkTags(store, spec.Tags); err != nil {
		return pushMeta{}, err
	}
	switch spec.SecretPushFormat {
	case "", "string", "binary":
	default:
		return pushMeta{}, providers.Errorf(providers.Invalid, "%s: push metadata secretPushFormat %q is neither string nor binary", store, spec.SecretPushFormat)
	}
	if len(spec.Description) > maxSMDescription {
		return pushMeta{}, providers.Errorf(providers.Invalid, "%s: push metadata description is %d characters, more than %d", store, len(spec.Description), maxSMDescription)
	}
	if len(spec.KMSKeyID) > maxKMSKeyID {
		return pushMeta{}, providers.Errorf(providers.Invalid, "%s: push metadata kmsKeyId is %d characters, more than %d", store, len(spec.KMSKeyID), maxKMSKeyID)
	}
	if len(spec.ReplicationLocations) > maxReplicas {
		return pushMeta{}, providers.Errorf(providers.Invalid, "%s: push metadata names %d replicationLocations, more than %d", store, len(spec.ReplicationLocations), maxReplicas)
	}
	for _, r := range spec.ReplicationLocations {
		if !awsRegion.MatchString(r) {
			return pushMeta{}, providers.Errorf(providers.Invalid, "%s: push metadata replicationLocations holds %.40q, which is not an AWS region name (eu-west-2)", store, r)
		}
	}
	return pushMeta{tags: spec.Tags, description: spec.Description, kmsKeyID: spec.KMSKeyID, format: spec.SecretPushFormat, replicas: spec.ReplicationLocations}, nil
}

func parsePSMeta(store string, raw []byte) (pushMeta, error) {
	var spec psMetaSpec
	if err := providers.ParsePushMetadata(raw, store, &spec); err != nil {
		return pushMeta{}, err
	}
	if err := checkTags(store, spec.Tags); err != nil {
		return pushMeta{}, err
	}
	m := pushMeta{tags: spec.Tags, description: spec.Description, kmsKeyID: spec.KMSKeyID, paramType: spec.SecretType}
	switch spec.SecretType {
	case "", "String", "StringList", "SecureString":
	default:
		return pushMeta{}, providers.Errorf(providers.Invalid, "%s: push metadata secretType %q is not String, StringList or SecureString", store, spec.SecretType)
	}
	if spec.KMSKeyID != "" && spec.SecretType != "" && spec.SecretType != "SecureString" {
		return pushMeta{}, providers.Errorf(providers.Invalid, "%s: push metadata kmsKeyID applies to secretType SecureString only", store)
	}
	if len(spec.Description) > maxPSDescription {
		return pushMeta{}, providers.Errorf(providers.Invalid, "%s: push metadata description is %d characters, more than %d", store, len(spec.Description), maxPSDescription)
	}
	if len(spec.KMSKeyID) > maxKMSKeyID {
		return pushMeta{}, providers.Errorf(providers.Invalid, "%s: push metadata kmsKeyID is %d characters, more than %d", store, len(spec.KMSKeyID), maxKMSKeyID)
	}
	if t := spec.Tier; t != nil {
		switch t.Type {
		case "", "Standard", "Advanced", "Intelligent-Tiering":
		default:
			return pushMeta{}, providers.Errorf(providers.Invalid, "%s: push metadata tier.type %q is not Standard, Advanced or Intelligent-Tiering", store, t.Type)
		}
		m.tier = t.Type
		if len(t.Policies) > 0 && string(t.Policies) != "null" {
			if t.Type != "Advanced" {
				return pushMeta{}, providers.Errorf(providers.Invalid, "%s: push metadata tier.policies need tier.type Advanced, as in AWS", store)
			}
			var policies []json.RawMessage
			if json.Unmarshal(t.Policies, &policies) != nil {
				return pushMeta{}, providers.Errorf(providers.Invalid, "%s: push metadata tier.policies must be a list of parameter policies", store)
			}
			if len(t.Policies) > maxParameterPolicies {
				return pushMeta{}, providers.Errorf(providers.Invalid, "%s: push metadata tier.policies is %d bytes, more than %d", store, len(t.Policies), maxParameterPolicies)
			}
			m.policies = string(t.Policies)
		}
	}
	return m, nil
}

// tagsToSet are the metadata's tags that cur lacks or holds otherwise.
func (m pushMeta) tagsToSet(cur current) map[string]string {
	out := map[string]string{}
	for k, v := range m.tags {
		if have, ok := cur.tags[k]; !ok || have != v {
			out[k] = v
		}
	}
	return out
}

// sameFormat: the value is stored as the metadata's secretPushFormat asks.
func (m pushMeta) sameFormat(cur current) bool {
	switch m.format {
	case "string":
		return !cur.binary
	case "binary":
		return cur.binary
	}
	return true
}

// userTags lists tags sorted by key, for requests.
func (m pushMeta) userTags() [][2]string {
	out := make([][2]string, 0, len(m.tags))
	for _, k := range slices.Sorted(maps.Keys(m.tags)) {
		out = append(out, [2]string{k, m.tags[k]})
	}
	return out
}

func (m pushMeta) String() string { return fmt.Sprintf("%d tags", len(m.tags)) }
