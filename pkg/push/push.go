// Package push writes values to providers on behalf of SecretPush requests:
// it resolves a PushSecret's stores with the same rules as reads, refuses
// read-only stores before anything is written, and maps each of the
// PushSecret's keys to its remote key.
package push

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"k8s.io/apiserver/pkg/warning"
	"k8s.io/klog/v2"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/apis/externalsecrets"
	esv1alpha1 "github.com/veil-dev/veil/pkg/apis/externalsecrets/v1alpha1"
	"github.com/veil-dev/veil/pkg/changes"
	"github.com/veil-dev/veil/pkg/metrics"
	"github.com/veil-dev/veil/pkg/providers"
	"github.com/veil-dev/veil/pkg/stores"
)

// ReadOnlyProvider is implemented by providers that can never be written
// to, such as fake, whose values are its store's spec.
type ReadOnlyProvider interface {
	ReadOnly() bool
}

// Pusher carries out SecretPushes.
type Pusher struct {
	Stores  *stores.Lookup
	Clients *stores.Clients
	// Marker records each key written in the ExternalSecrets that read it,
	// before the push is answered, so every replica reads it again; nil
	// invalidates only this process's cache.
	Marker *changes.Marker
}

// Push validates a SecretPush for ps and carries it out. An error means
// nothing was written (the request or a store is not acceptable); failures
// of single writes are results, so one unreachable store does not hide
// what happened to the others. Errors are *providers.Error.
func (p *Pusher) Push(ctx context.Context, ps *configv1alpha1.PushSecret, spec externalsecrets.SecretPushSpec, dryRun bool) ([]externalsecrets.SecretPushResult, error) {
	action := spec.Action
	if action == "" {
		action = externalsecrets.SecretPushActionPush
	}
	keys, err := validate(ps, action, spec)
	if err != nil {
		return nil, err
	}
	plan, err := planDataTo(ps, keys, action == externalsecrets.SecretPushActionDelete)
	if err != nil {
		return nil, err
	}
	if err := checkMetadata(ps); err != nil {
		return nil, err
	}
	// The values of dataTo entries with remoteKey, by entry ("dataTo[0]").
	bundles := map[string][]byte{}
	if action == externalsecrets.SecretPushActionPush {
		for _, es := range plan {
			for _, e := range es {
				if e.bundle == nil {
					continue
				}
				if _, done := bundles[e.from]; done {
					continue
				}
				v, err := bundleValue(e.from, e.bundle, spec.Data)
				if err != nil {
					return nil, err
				}
				bundles[e.from] = v
			}
		}
	}

	type target struct {
		*stores.Store
		entries []entry
	}
	targets := make([]target, 0, len(ps.Spec.SecretStoreRefs))
	for _, ref := range ps.Spec.SecretStoreRefs {
		s, err := p.Stores.For(ctx, ps.Namespace, ref)
		if err != nil {
			return nil, err
		}
		if s.Spec.ReadOnly {
			return nil, providers.Errorf(providers.Forbidden, "%s is read-only (spec.readOnly), so nothing may be pushed through it", &s.Store)
		}
		if ro, ok := s.Provider.(ReadOnlyProvider); ok && ro.ReadOnly() {
			return nil, providers.Errorf(providers.Forbidden, "%s uses the %s provider, which cannot be written to", &s.Store, s.Provider.Name())
		}
		// Every remote key, whether the PushSecret names it or dataTo
		// makes it of a source key's name, is checked against the store's
		// scope before anything is written through any store.
		entries := append(explicitEntries(ps), plan[storeKey(ref)]...)
		for _, e := range entries {
			if err := s.Scope.CheckKey(e.remoteKey); err != nil {
				if e.dataTo {
					return nil, providers.Within(err, "%s", describeEntry(e))
				}
				return nil, err
			}
		}
		targets = append(targets, target{Store: s, entries: entries})
	}
	// Every key pushed or deleted is recorded as, or must be, this
	// PushSecret's: a SecretPush names the PushSecret, whoever sends it.
	owner := providers.Owner{Namespace: ps.Namespace, Name: ps.Name, UID: string(ps.UID)}

	var results []externalsecrets.SecretPushResult
	for _, t := range targets {
		s := t.Store
		var written []string
		ref := externalsecrets.StoreRef{Kind: string(s.Kind), Name: s.Name}
		var (
			client providers.Client
			id     stores.Identity
			err    error
		)
		if !dryRun {
			client, id, err = p.Clients.For(ctx, s, ps.Namespace)
		}
		for _, e := range t.entries {
			r := externalsecrets.SecretPushResult{StoreRef: ref, SecretKey: e.secretKey, RemoteKey: e.remoteKey, Property: e.property}
			value := spec.Data[e.secretKey]
			if e.bundle != nil {
				value = bundles[e.from]
			}
			switch {
			case dryRun:
				r.Result = esv1alpha1.SecretPushResultDryRun
			case err != nil:
				fail(&r, err)
			case action == externalsecrets.SecretPushActionDelete:
				if derr := client.Delete(ctx, providers.Delete{Key: e.remoteKey, Property: e.property, Owner: owner}); derr != nil && providers.ReasonOf(derr) != providers.NotFound {
					fail(&r, derr)
				} else {
					r.Result = esv1alpha1.SecretPushResultDeleted
					p.Clients.Invalidate(id)
					written = append(written, e.remoteKey)
				}
			default:
				res, perr := client.Push(ctx, providers.Push{
					Key:         e.remoteKey,
					Property:    e.property,
					Value:       value,
					Owner:       owner,
					IfNotExists: ps.Spec.UpdatePolicy == configv1alpha1.PushSecretUpdatePolicyIfNotExists,
					Replace:     ps.Spec.UpdatePolicy == configv1alpha1.PushSecretUpdatePolicyReplace,
					Metadata:    e.metadata,
				})
				if perr != nil {
					fail(&r, perr)
				} else {
					r.Result = res
					if res == esv1alpha1.SecretPushResultPushed {
						p.Clients.Invalidate(id)
						written = append(written, e.remoteKey)
					}
				}
			}
			results = append(results, r)
		}
		p.announce(ctx, s, written)
	}
	return results, nil
}

// announce records the keys written through s in the ExternalSecrets that
// read them, so that a read after this push is answered, on any replica,
// with what it wrote. If that fails the push still happened; the client
// is warned that other replicas may serve the old value until their
// refresh interval ends.
func (p *Pusher) announce(ctx context.Context, s *stores.Store, written []string) {
	if p.Marker == nil || len(written) == 0 {
		return
	}
	store := changes.Store{Kind: s.Kind, Namespace: s.Namespace, Name: s.Name}
	n, err := p.Marker.Mark(ctx, store, written, configv1alpha1.ValueChangePushed)
	metrics.ValueChangesMarked.WithLabelValues(string(configv1alpha1.ValueChangePushed)).Add(float64(n))
	if err != nil {
		klog.ErrorS(err, "Recording pushed keys in the ExternalSecrets that read them", "store", store.String())
		warning.AddWarning(ctx, "", fmt.Sprintf("the push through %s succeeded, but not every ExternalSecret that reads its keys could be told; other veil-apiserver replicas may serve the old value until its refresh interval ends", store))
	}
}

// fail records a key that was not written: NotOwner, which retrying does
// not change, or Failed.
func fail(r *externalsecrets.SecretPushResult, err error) {
	r.Result, r.Reason, r.Message = esv1alpha1.SecretPushResultFailed, string(providers.ReasonOf(err)), err.Error()
	if r.Reason == string(providers.NotOwner) {
		r.Result = esv1alpha1.SecretPushResultNotOwner
	}
}

// validate checks that the request names exactly what the PushSecret maps:
// nothing is written that the PushSecret does not name, and no key of it is
// silently skipped. It returns the source keys that spec.dataTo is to be
// expanded over: the keys of the data of a Push, or the secretKeys of a
// Delete.
//
// veil-apiserver never sees the source Secret, so it cannot tell whether
// a request leaves out a key dataTo would match; it makes sure that every
// key it is sent is one the PushSecret pushes: named by spec.data, or
// matched by a dataTo entry.
func validate(ps *configv1alpha1.PushSecret, action externalsecrets.SecretPushAction, spec externalsecrets.SecretPushSpec) ([]string, error) {
	data := spec.Data
	matchers, err := dataToMatchers(ps)
	if err != nil {
		return nil, err
	}
	explicit := explicitKeys(ps)
	byDataTo := func(k string) bool {
		if k == "" {
			return false
		}
		for _, m := range matchers {
			if m == nil || m.MatchString(k) {
				return true
			}
		}
		return false
	}
	switch action {
	case externalsecrets.SecretPushActionDelete:
		if len(data) > 0 {
			return nil, providers.Errorf(providers.Invalid, "a SecretPush with action Delete must not carry data")
		}
		if n := len(spec.SecretKeys); n > configv1alpha1.MaxDataToKeys+len(ps.Spec.Data) {
			return nil, providers.Errorf(providers.Invalid, "spec.secretKeys names %d keys, more than the %d PushSecret %s/%s can have pushed",
				n, configv1alpha1.MaxDataToKeys+len(ps.Spec.Data), ps.Namespace, ps.Name)
		}
		var keys []string
		for _, k := range spec.SecretKeys {
			// Keys spec.data names, or dataTo no longer matches, have no
			// remote key made of their name; they are ignored.
			if !explicit[k] && byDataTo(k) {
				keys = append(keys, k)
			}
		}
		return keys, nil
	case externalsecrets.SecretPushActionPush:
		if len(spec.SecretKeys) > 0 {
			return nil, providers.Errorf(providers.Invalid, "spec.secretKeys is for action Delete only; a Push names its keys in spec.data")
		}
	default:
		return nil, providers.Errorf(providers.Invalid, "spec.action %q is neither Push nor Delete", action)
	}
	var missing, extra, keys []string
	for k := range explicit {
		if _, ok := data[k]; !ok {
			missing = append(missing, k)
		}
	}
	for k := range data {
		switch {
		case byDataTo(k):
			keys = append(keys, k)
		case !explicit[k]:
			extra = append(extra, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	var problems []string
	if len(missing) > 0 {
		problems = append(problems, fmt.Sprintf("spec.data lacks %s, which PushSecret %s/%s maps", quote(missing), ps.Namespace, ps.Name))
	}
	if len(extra) > 0 {
		problems = append(problems, fmt.Sprintf("spec.data has %s, which PushSecret %s/%s does not map to any remote key", quote(extra), ps.Namespace, ps.Name))
	}
	if whole, ok := data[""]; ok && explicit[""] {
		if p := checkWhole(whole); p != "" {
			problems = append(problems, p)
		}
	}
	if len(problems) > 0 {
		return nil, providers.Errorf(providers.Invalid, "%s", strings.Join(problems, "; "))
	}
	return keys, nil
}

// checkWhole checks the value of the entries without secretKey, under the
// empty key: the whole Secret, as veil-syncer sends it and ESO defines it,
// is a JSON object of strings of at most 1 MiB. It says
// what is wrong without quoting the value, or returns "".
func checkWhole(v []byte) string {
	if len(v) > esv1alpha1.MaxWholeSecretBytes {
		return fmt.Sprintf(`spec.data[""] (the whole Secret, for the entries without secretKey) is %d bytes, more than the %d (1 MiB) a Secret can hold`, len(v), esv1alpha1.MaxWholeSecretBytes)
	}
	var obj map[string]string
	if json.Unmarshal(v, &obj) != nil || obj == nil {
		return `spec.data[""] (the whole Secret, for the entries without secretKey) must be a JSON object of string values`
	}
	return ""
}

func quote(keys []string) string {
	q := make([]string, len(keys))
	for i, k := range keys {
		q[i] = fmt.Sprintf("%q", k)
	}
	return strings.Join(q, ", ")
}
