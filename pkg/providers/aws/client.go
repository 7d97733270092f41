package aws

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"

	esv1alpha1 "github.com/veil-dev/veil/pkg/apis/externalsecrets/v1alpha1"
	"github.com/veil-dev/veil/pkg/providers"
)

// Veil tags what it creates with its mark and the PushSecret that owns it,
// and overwrites or deletes a key only for its owner; a push that says
// Replace may take over a key without an owner (not Veil's, or marked
// before Veil recorded owners), never another PushSecret's. External
// Secrets Operator uses the same mark key with its own value, so neither
// overwrites the other's by default.
const (
	ManagedByTagKey      = "managed-by"
	ManagedByTagValue    = "veil"
	OwnerNamespaceTagKey = "veil.dev/owner-namespace"
	OwnerNameTagKey      = "veil.dev/owner-name"
	OwnerUIDTagKey       = "veil.dev/owner-uid"
)

// ownerTags are the tags that make a key o's, as key/value pairs.
func ownerTags(o providers.Owner) [][2]string {
	return [][2]string{{ManagedByTagKey, ManagedByTagValue}, {OwnerNamespaceTagKey, o.Namespace}, {OwnerNameTagKey, o.Name}, {OwnerUIDTagKey, o.UID}}
}

// base is what the clients of both services share.
type base struct {
	// store names the store in messages: "SecretStore app/aws".
	store string
	// identity says, for messages, whom AWS sees: "the access key in
	// Secret app/aws-keys", "role arn:... assumed with ...".
	identity string
	// endpoint is where the service client connects.
	endpoint  string
	prefix    string
	transport *http.Transport
}

// key is the AWS name of a remote key.
func (b *base) key(k string) string { return b.prefix + k }

func (b *base) Close(context.Context) error {
	b.transport.CloseIdleConnections()
	return nil
}

// reading says, for messages, what a Get was reading.
func reading(kind string, ref providers.Ref) string {
	if ref.Version != "" {
		return fmt.Sprintf("reading version %q of %s %q", ref.Version, kind, ref.Key)
	}
	return fmt.Sprintf("reading %s %q", kind, ref.Key)
}

// current is the state of a remote key before a push or delete.
type current struct {
	exists bool
	// managed: the key carries Veil's managed-by tag; ownerNamespace and
	// ownerUID name the PushSecret that owns it.
	managed                  bool
	ownerNamespace, ownerUID string
	// value is the latest value, when the key has one (hasValue).
	value    []byte
	hasValue bool
	// paramType is a parameter's type, which an overwrite keeps.
	paramType string
	// tags are all the key's tags.
	tags map[string]string
	// binary: a secret's value is SecretBinary.
	binary bool
}

// tag notes one tag of a key in cur.
func (cur *current) tag(key, value string) {
	if cur.tags == nil {
		cur.tags = map[string]string{}
	}
	cur.tags[key] = value
	switch key {
	case ManagedByTagKey:
		cur.managed = value == ManagedByTagValue
	case OwnerNamespaceTagKey:
		cur.ownerNamespace = value
	case OwnerUIDTagKey:
		cur.ownerUID = value
	}
}

// owned: some PushSecret holds the key.
func (cur *current) owned() bool { return cur.managed && cur.ownerUID != "" }

func (cur *current) ownedBy(o providers.Owner) bool {
	return cur.managed && o.Is(cur.ownerNamespace, cur.ownerUID)
}

// remote is one service's side of push and remove.
type remote interface {
	kind() string
	read(ctx context.Context, name string) (current, error)
	// parseMeta reads and checks a push's metadata, before anything is
	// written.
	parseMeta(raw []byte) (pushMeta, error)
	// create makes the key with o's tags and meta, failing if it exists.
	create(ctx context.Context, name string, value []byte, o providers.Owner, meta pushMeta) error
	// own tags an existing key as o's.
	own(ctx context.Context, name string, o providers.Owner) error
	update(ctx context.Context, name string, value []byte, cur current, meta pushMeta) error
	// retag adds meta's tags the key lacks or holds with other values.
	retag(ctx context.Context, name string, tags map[string]string) error
	delete(ctx context.Context, name string) error
}

// push writes p through r, applying the rules both services share. Whose
// the key is is decided from its tags before its value is compared with
// anything: a key another PushSecret holds gets NotOwner, and one without
// an owner Conflict (unless Replace), whatever its value.
func push(ctx context.Context, b *base, r remote, p providers.Push) (string, error) {
	if !p.Owner.Valid() {
		return "", providers.Errorf(providers.Invalid, "a push to %s names no owner", b.store)
	}
	name := b.key(p.Key)
	what := fmt.Sprintf("%s %q", r.kind(), name)
	meta, err := r.parseMeta(p.Metadata)
	if err != nil {
		return "", err
	}
	cur, err := r.read(ctx, name)
	if err != nil {
		return "", err
	}
	if !cur.exists {
		value := p.Value
		if p.Property != "" {
			if value, err = setProperty(nil, p.Property, p.Value, what); err != nil {
				return "", err
			}
		}
		return esv1alpha1.SecretPushResultPushed, r.create(ctx, name, value, p.Owner, meta)
	}
	mine := cur.ownedBy(p.Owner)
	if !mine {
		switch {
		case p.IfNotExists:
			// Not ours to look into: the key exists, so it is skipped.
			return esv1alpha1.SecretPushResultSkippedExists, nil
		case cur.owned():
			return "", providers.Errorf(providers.NotOwner, "%s: %s belongs to another PushSecret; Veil never overwrites it for this one", b.store, what)
		case !p.Replace:
			return "", providers.Errorf(providers.Conflict, "%s: %s exists and was not created by Veil for a PushSecret (it has no tag %s=%s with an owner), so Veil will not overwrite it; set the PushSecret's updatePolicy to Replace to take it over", b.store, what, ManagedByTagKey, ManagedByTagValue)
		}
		// Taken over before anything is compared, so that Unchanged is
		// never the answer about a key that is not ours.
		if err := r.own(ctx, name, p.Owner); err != nil {
			return "", err
		}
	}
	if p.Property == "" && p.IfNotExists {
		return esv1alpha1.SecretPushResultSkippedExists, nil
	}

	next := p.Value
	if p.Property != "" {
		obj, err := object(cur.value, what)
		if err != nil {
			return "", err
		}
		if raw, ok := obj[p.Property]; ok {
			if p.IfNotExists {
				return esv1alpha1.SecretPushResultSkippedExists, nil
			}
			var s string
			if json.Unmarshal(raw, &s) == nil && s == string(p.Value) {
				return unchanged(ctx, r, name, cur, meta)
			}
		}
		if next, err = setProperty(cur.value, p.Property, p.Value, what); err != nil {
			return "", err
		}
	} else if cur.hasValue && bytes.Equal(cur.value, p.Value) && meta.sameFormat(cur) {
		return unchanged(ctx, r, name, cur, meta)
	}
	if err := r.update(ctx, name, next, cur, meta); err != nil {
		return "", err
	}
	if changed := meta.tagsToSet(cur); len(changed) > 0 {
		if err := r.retag(ctx, name, changed); err != nil {
			return "", err
		}
	}
	return esv1alpha1.SecretPushResultPushed, nil
}

// unchanged answers a push whose value is already there: Unchanged, unless
// the metadata's tags are not, which are then set (Pushed).
func unchanged(ctx context.Context, r remote, name string, cur current, meta pushMeta) (string, error) {
	changed := meta.tagsToSet(cur)
	if len(changed) == 0 {
		return esv1alpha1.SecretPushResultUnchanged, nil
	}
	if err := r.retag(ctx, name, changed); err != nil {
		return "", err
	}
	return esv1alpha1.SecretPushResultPushed, nil
}

// remove deletes d through r: the whole key, or one property of it (the
// key goes when its last property does). It deletes only what d.Owner holds.
func remove(ctx context.Context, b *base, r remote, d providers.Delete) error {
	if !d.Owner.Valid() {
		return providers.Errorf(providers.Invalid, "a delete from %s names no owner", b.store)
	}
	name := b.key(d.Key)
	what := fmt.Sprintf("%s %q", r.kind(), name)
	cur, err := r.read(ctx, name)
	if err != nil || !cur.exists {
		return err
	}
	switch {
	case cur.owned() && !cur.ownedBy(d.Owner):
		return providers.Errorf(providers.NotOwner, "%s: %s belongs to another PushSecret, so Veil will not delete it for this one", b.store, what)
	case !cur.ownedBy(d.Owner):
		return providers.Errorf(providers.NotOwner, "%s: %s was not created by Veil for a PushSecret (it has no tag %s=%s with an owner), so Veil will not delete it", b.store, what, ManagedByTagKey, ManagedByTagValue)
	}
	if d.Property == "" {
		return r.delete(ctx, name)
	}
	obj, err := object(cur.value, what)
	if err != nil {
		return err
	}
	if _, ok := obj[d.Property]; !ok {
		return nil
	}
	delete(obj, d.Property)
	if len(obj) == 0 {
		return r.delete(ctx, name)
	}
	next, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	return r.update(ctx, name, next, cur, pushMeta{})
}

// object parses a value as a JSON object; an empty value is an empty one.
// Fields stay raw, so those Veil does not touch keep their exact form.
func object(value []byte, what string) (map[string]json.RawMessage, error) {
	obj := map[string]json.RawMessage{}
	if len(bytes.TrimSpace(value)) == 0 {
		return obj, nil
	}
	// encoding/json's errors quote the input; none is passed on.
	if err := json.Unmarshal(value, &obj); err != nil || obj == nil {
		return nil, providers.Errorf(providers.Invalid, "%s is not a JSON object, so a property cannot be written into it; push the whole value instead", what)
	}
	return obj, nil
}

// setProperty returns value (a JSON object, or empty) with property set
// to the string v.
func setProperty(value []byte, property string, v []byte, what string) ([]byte, error) {
	if !utf8.ValidString(property) {
		// encoding/json would write it as another name.
		return nil, providers.Errorf(providers.Invalid, "property %q of %s is not valid UTF-8, so it cannot name a JSON property", property, what)
	}
	if !utf8.Valid(v) {
		return nil, providers.Errorf(providers.Invalid, "the value for property %q of %s is not text, and JSON properties hold text; push it as a whole value instead", property, what)
	}
	obj, err := object(value, what)
	if err != nil {
		return nil, err
	}
	if obj[property], err = marshal(string(v)); err != nil {
		return nil, err
	}
	return marshal(obj)
}

// marshal encodes v as JSON without escaping <, > and &, so that fields
// Veil leaves alone keep their exact bytes.
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// versionNames maps the keys a Versions call asks about to the names AWS
// knows them by (with the store's prefix), each once. ARNs are left out:
// a name filter cannot match them, so their changes are left to refresh.
func (b *base) versionNames(keys []string) (want map[string]string, names []string, err error) {
	if len(keys) > providers.MaxVersionKeys {
		return nil, nil, providers.Errorf(providers.Invalid, "%s: %d keys are more than the %d changes are detected for at once", b.store, len(keys), providers.MaxVersionKeys)
	}
	want = map[string]string{}
	for _, k := range keys {
		if strings.HasPrefix(k, "arn:") || k == "" {
			continue
		}
		if _, dup := want[b.key(k)]; !dup {
			want[b.key(k)] = k
			names = append(names, b.key(k))
		}
	}
	return want, names, nil
}
