package push

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	esv1alpha1 "github.com/veil-dev/veil/pkg/apis/externalsecrets/v1alpha1"
	"github.com/veil-dev/veil/pkg/providers"
	"github.com/veil-dev/veil/pkg/rewrite"
	"github.com/veil-dev/veil/pkg/syncer/template"
)

// How spec.dataTo is carried out, as in External Secrets Operator: each
// entry matches keys of the source Secret by name and pushes them to the
// one store it names, each to the remote key its rewrites make of its name
// (or, with remoteKey, all of them as one JSON object). A key that a
// spec.data entry names is taken out of every dataTo entry: data wins.
//
// The names come from the source Secret, which whoever may write that
// Secret controls, and veil-apiserver sees them only as the keys of the
// SecretPush. So every remote key made of them goes through the checks a
// remote key written in the PushSecret goes through (the store's key
// scope, the ClusterSecretStore's conditions, the provider's own
// validation) plus bounds of its own (MaxDataToKeys keys, of at most
// MaxDataToRemoteKeyLength bytes of printable UTF-8), and two keys that
// end as one remote key refuse the push, naming both, so that neither the
// order of a map nor the Secret's writer decides which value wins.

// entry is one remote key (or property of one) that a push writes through
// one store, or that a delete removes.
type entry struct {
	// from names what in the PushSecret made it: "data[0]", "dataTo[1]".
	from      string
	secretKey string
	// bundle, for a dataTo entry with remoteKey, lists the source keys
	// pushed together as one JSON object, sorted; secretKey is then "".
	bundle    []string
	remoteKey string
	property  string
	// dataTo: the entry came from spec.dataTo, so its remote key must be
	// checked as a name the source Secret chose.
	dataTo bool
	// metadata is the entry's metadata, as JSON, from the PushSecret's spec.
	metadata []byte
}

// storeKey identifies a store of spec.secretStoreRefs.
func storeKey(r configv1alpha1.SecretStoreRef) string {
	kind := string(r.Kind)
	if kind == "" {
		kind = string(configv1alpha1.SecretStoreKind)
	}
	return kind + "/" + r.Name
}

// explicitKeys are the source keys spec.data names ("" for the whole Secret).
func explicitKeys(ps *configv1alpha1.PushSecret) map[string]bool {
	out := map[string]bool{}
	for _, d := range ps.Spec.Data {
		out[d.Match.SecretKey] = true
	}
	return out
}

// dataToMatchers compiles the match regexps of spec.dataTo; nil matches
// every key. The CRD bounds them to 1024 bytes; RE2 bounds the time.
func dataToMatchers(ps *configv1alpha1.PushSecret) ([]*regexp.Regexp, error) {
	out := make([]*regexp.Regexp, len(ps.Spec.DataTo))
	for i, d := range ps.Spec.DataTo {
		if d.Match == nil || d.Match.Regexp == "" {
			continue
		}
		if len(d.Match.Regexp) > 1024 {
			return nil, providers.Errorf(providers.Invalid, "dataTo[%d].match.regexp is %d bytes, more than 1024", i, len(d.Match.Regexp))
		}
		re, err := regexp.Compile(d.Match.Regexp)
		if err != nil {
			return nil, providers.Errorf(providers.Invalid, "dataTo[%d].match.regexp is not a valid RE2 regular expression (%v); fix it", i, err)
		}
		out[i] = re
	}
	return out, nil
}

// validSourceKey: a key a Secret can hold.
var validSourceKey = regexp.MustCompile(`^[-._a-zA-Z0-9]{1,253}$`)

// planDataTo expands spec.dataTo over keys, the source keys the request
// names, into entries by store (storeKey). Keys spec.data names are left
// out. It checks every remote key it makes and refuses collisions, with
// the explicit entries too, within a store. deleting plans a Delete: then
// every entry with remoteKey is named whatever keys are given, since its
// remote key is not made of them.
func planDataTo(ps *configv1alpha1.PushSecret, keys []string, deleting bool) (map[string][]entry, error) {
	if len(ps.Spec.DataTo) == 0 {
		return nil, nil
	}
	matchers, err := dataToMatchers(ps)
	if err != nil {
		return nil, err
	}
	explicit := explicitKeys(ps)
	sorted := make([]string, 0, len(keys))
	for _, k := range keys {
		if !explicit[k] {
			sorted = append(sorted, k)
		}
	}
	sort.Strings(sorted)
	var bad []string
	for _, k := range sorted {
		if !validSourceKey.MatchString(k) {
			bad = append(bad, fmt.Sprintf("%.64q", k))
		}
	}
	if len(bad) > 0 {
		return nil, providers.Errorf(providers.Invalid, "spec.data has keys that no Secret can hold: %s", strings.Join(bad, ", "))
	}
	if len(sorted) > configv1alpha1.MaxDataToKeys {
		return nil, providers.Errorf(providers.Invalid, "spec.dataTo would push %d keys of the source Secret, more than the %d one PushSecret may push with dataTo; "+
			"narrow dataTo[].match.regexp or split the Secret", len(sorted), configv1alpha1.MaxDataToKeys)
	}

	stores := map[string]bool{}
	for _, r := range ps.Spec.SecretStoreRefs {
		stores[storeKey(r)] = true
	}
	for i, d := range ps.Spec.DataTo {
		if !stores[storeKey(d.StoreRef)] {
			return nil, providers.Errorf(providers.Invalid, "dataTo[%d].storeRef %s is not one of spec.secretStoreRefs; add it there", i, storeKey(d.StoreRef))
		}
	}
	// One budget bounds the transforms of every entry of one push, as one
	// ExternalSecret read bounds its dataFrom rewrites.
	budget := template.NewBudget()
	out := map[string][]entry{}
	for i, d := range ps.Spec.DataTo {
		field := fmt.Sprintf("dataTo[%d]", i)
		var matched []string
		for _, k := range sorted {
			if matchers[i] == nil || matchers[i].MatchString(k) {
				matched = append(matched, k)
			}
		}
		if len(matched) == 0 && !(deleting && d.RemoteKey != "") {
			continue
		}
		store := storeKey(d.StoreRef)
		if d.RemoteKey != "" {
			if len(d.Rewrite) > 0 {
				return nil, providers.Errorf(providers.Invalid, "%s sets both remoteKey and rewrite; rewrite names each key's own remote key, remoteKey pushes them all as one: keep one", field)
			}
			out[store] = append(out[store], entry{from: field, bundle: append([]string{}, matched...), remoteKey: d.RemoteKey, dataTo: true, metadata: rawMetadata(d.Metadata)})
			continue
		}
		rw, err := rewrite.Compile(field, d.Rewrite)
		if err != nil {
			return nil, err
		}
		renamed, err := rw.Apply(budget, matched)
		if err != nil {
			return nil, err
		}
		for _, k := range matched {
			rk := renamed[k]
			if why := checkDataToRemoteKey(rk); why != "" {
				return nil, providers.Errorf(providers.Invalid, "%s turns source key %q into remote key %.80q, which %s; fix dataTo[%d].rewrite or match", field, k, rk, why, i)
			}
			out[store] = append(out[store], entry{from: field, secretKey: k, remoteKey: rk, dataTo: true, metadata: rawMetadata(d.Metadata)})
		}
	}
	// Collisions, within each store, between dataTo entries and with the
	// explicit entries, which are written to every store.
	for store, es := range out {
		seen := map[string]entry{}
		for _, d := range explicitEntries(ps) {
			seen[remoteKeyOf(d)] = d
		}
		for _, e := range es {
			at := remoteKeyOf(e)
			if prev, taken := seen[at]; taken {
				return nil, providers.Errorf(providers.Invalid, "%s and %s both push to remote key %q of %s; "+
					"two values may not be written to one remote key, so nothing was pushed: change a rewrite or match, or name one of the keys in spec.data",
					describeEntry(prev), describeEntry(e), at, store)
			}
			seen[at] = e
		}
	}
	return out, nil
}

// explicitEntries are the entries of spec.data, written to every store.
func explicitEntries(ps *configv1alpha1.PushSecret) []entry {
	out := make([]entry, len(ps.Spec.Data))
	for i, d := range ps.Spec.Data {
		out[i] = entry{from: fmt.Sprintf("data[%d]", i), secretKey: d.Match.SecretKey, remoteKey: d.Match.RemoteRef.RemoteKey, property: d.Match.RemoteRef.Property, metadata: rawMetadata(d.Metadata)}
	}
	return out
}

func rawMetadata(m *apiextensionsv1.JSON) []byte {
	if m == nil {
		return nil
	}
	return m.Raw
}

// checkMetadata bounds the metadata of every entry of the PushSecret,
// before anything is written: MaxPushMetadataBytes each.
func checkMetadata(ps *configv1alpha1.PushSecret) error {
	for i, d := range ps.Spec.Data {
		if n := len(rawMetadata(d.Metadata)); n > configv1alpha1.MaxPushMetadataBytes {
			return providers.Errorf(providers.Invalid, "data[%d].metadata is %d bytes, more than %d", i, n, configv1alpha1.MaxPushMetadataBytes)
		}
	}
	for i, d := range ps.Spec.DataTo {
		if n := len(rawMetadata(d.Metadata)); n > configv1alpha1.MaxPushMetadataBytes {
			return providers.Errorf(providers.Invalid, "dataTo[%d].metadata is %d bytes, more than %d", i, n, configv1alpha1.MaxPushMetadataBytes)
		}
	}
	return nil
}

func remoteKeyOf(e entry) string {
	if e.property == "" {
		return e.remoteKey
	}
	return e.remoteKey + "#" + e.property
}

func describeEntry(e entry) string {
	switch {
	case e.bundle != nil:
		return fmt.Sprintf("%s (source keys %s)", e.from, quote(e.bundle))
	case e.secretKey == "":
		return fmt.Sprintf("%s (the whole Secret)", e.from)
	}
	return fmt.Sprintf("%s (source key %q)", e.from, e.secretKey)
}

// checkDataToRemoteKey bounds a remote key made of a source key name: not
// empty, at most MaxDataToRemoteKeyLength bytes, printable UTF-8. It says
// what is wrong, or "".
func checkDataToRemoteKey(k string) string {
	switch {
	case k == "":
		return "is empty"
	case len(k) > configv1alpha1.MaxDataToRemoteKeyLength:
		return fmt.Sprintf("is %d bytes, more than %d", len(k), configv1alpha1.MaxDataToRemoteKeyLength)
	case !utf8.ValidString(k):
		return "is not UTF-8"
	case strings.IndexFunc(k, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0:
		return "holds a character that is not printable"
	}
	return ""
}

// bundleValue is the value of a dataTo entry with remoteKey: a JSON object
// of each matched key to its value as a string, keys sorted, "<>&" as they
// are, as the whole Secret of a data entry without secretKey. A value that
// JSON would change (not UTF-8) is refused, naming the key, as is an
// object over 1 MiB.
func bundleValue(field string, keys []string, data map[string][]byte) ([]byte, error) {
	obj := make(map[string]string, len(keys))
	var binary []string
	for _, k := range keys {
		v := data[k]
		if !utf8.Valid(v) {
			binary = append(binary, k)
		}
		obj[k] = string(v)
	}
	if len(binary) > 0 {
		return nil, providers.Errorf(providers.Invalid, "%s pushes keys %s as one JSON object of strings, but their values are not UTF-8 text; "+
			"leave them out with dataTo[].match, or push them without remoteKey", field, quote(binary))
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(obj); err != nil {
		return nil, providers.Wrap(providers.Invalid, err, "%s", field)
	}
	out := bytes.TrimSuffix(b.Bytes(), []byte("\n"))
	if len(out) > esv1alpha1.MaxWholeSecretBytes {
		return nil, providers.Errorf(providers.Invalid, "%s pushes keys %s as one JSON object of %d bytes, more than the %d (1 MiB) Veil pushes as one value",
			field, quote(keys), len(out), esv1alpha1.MaxWholeSecretBytes)
	}
	return out, nil
}
