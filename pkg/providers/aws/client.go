package aws

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"unicode/utf8"

	"github.com/veil-dev/veil/pkg/providers"
)

// Veil tags what it creates, and overwrites or deletes only what carries
// the tag unless a push says Replace: a PushSecret must not take over a
// secret someone else manages. External Secrets Operator uses the same
// key with its own value, so neither overwrites the other's by default.
const (
	ManagedByTagKey   = "managed-by"
	ManagedByTagValue = "veil"
)

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
	// managed: the key carries Veil's managed-by tag.
	managed bool
	// value is the latest value, when the key has one (hasValue).
	value    []byte
	hasValue bool
	// paramType is a parameter's type, which an overwrite keeps.
	paramType string
}

// remote is one service's side of push and remove.
type remote interface {
	kind() string
	read(ctx context.Context, name string) (current, error)
	create(ctx context.Context, name string, value []byte) error
	update(ctx context.Context, name string, value []byte, cur current) error
	delete(ctx context.Context, name string) error
}

// push writes p through r, applying the rules both services share.
func push(ctx context.Context, b *base, r remote, p providers.Push) (providers.PushResult, error) {
	name := b.key(p.Key)
	what := fmt.Sprintf("%s %q", r.kind(), name)
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
		return providers.Pushed, r.create(ctx, name, value)
	}
	if p.Property == "" && p.IfNotExists {
		return providers.SkippedExists, nil
	}

	next := p.Value
	if p.Property != "" {
		obj, err := object(cur.value, what)
		if err != nil {
			return "", err
		}
		if raw, ok := obj[p.Property]; ok {
			if p.IfNotExists {
				return providers.SkippedExists, nil
			}
			var s string
			if json.Unmarshal(raw, &s) == nil && s == string(p.Value) {
				return providers.Unchanged, nil
			}
		}
		if next, err = setProperty(cur.value, p.Property, p.Value, what); err != nil {
			return "", err
		}
	} else if cur.hasValue && bytes.Equal(cur.value, p.Value) {
		return providers.Unchanged, nil
	}
	if !cur.managed && !p.Replace {
		return "", providers.Errorf(providers.Conflict, "%s: %s exists and was not created by Veil (it has no tag %s=%s), so Veil will not overwrite it; set the PushSecret's updatePolicy to Replace to take it over", b.store, what, ManagedByTagKey, ManagedByTagValue)
	}
	return providers.Pushed, r.update(ctx, name, next, cur)
}

// remove deletes d through r: the whole key, or one property of it (the
// key goes when its last property does). It deletes only what Veil created.
func remove(ctx context.Context, b *base, r remote, d providers.Delete) error {
	name := b.key(d.Key)
	what := fmt.Sprintf("%s %q", r.kind(), name)
	cur, err := r.read(ctx, name)
	if err != nil || !cur.exists {
		return err
	}
	if !cur.managed {
		return providers.Errorf(providers.Conflict, "%s: %s was not created by Veil (it has no tag %s=%s), so Veil will not delete it", b.store, what, ManagedByTagKey, ManagedByTagValue)
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
	return r.update(ctx, name, next, cur)
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
	if !utf8.Valid(v) {
		return nil, providers.Errorf(providers.Invalid, "the value for property %q of %s is not text, and JSON properties hold text; push it as a whole value instead", property, what)
	}
	obj, err := object(value, what)
	if err != nil {
		return nil, err
	}
	if obj[property], err = json.Marshal(string(v)); err != nil {
		return nil, err
	}
	return json.Marshal(obj)
}
