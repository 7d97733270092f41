package aws

import (
	"bytes"
	"encoding/json"
	"testing"
	"unicode/utf8"

	"github.com/veil-dev/veil/pkg/providers"
)

// FuzzSetProperty: writing one property into a stored value either refuses
// with Invalid, or yields a JSON object whose property is the pushed text
// and whose other fields are byte for byte what they were.
func FuzzSetProperty(f *testing.F) {
	f.Add([]byte(`{"a":"x","n":123456789012345678}`), "password", []byte("s3cret"))
	f.Add([]byte(""), "p", []byte("v"))
	f.Add([]byte(`[1,2]`), "p", []byte("v"))
	f.Add([]byte(`null`), "p", []byte("v"))
	f.Add([]byte(`{"p":{"deep":true}}`), "p", []byte("\xff"))
	f.Fuzz(func(t *testing.T, value []byte, property string, v []byte) {
		out, err := setProperty(value, property, v, `secret "k"`)
		if err != nil {
			if providers.ReasonOf(err) != providers.Invalid {
				t.Fatalf("setProperty failed as %s: %v", providers.ReasonOf(err), err)
			}
			// The message cannot depend on the value pushed: it never
			// quotes it.
			if utf8.Valid(v) {
				if _, other := setProperty(value, property, []byte("other"), `secret "k"`); other == nil || other.Error() != err.Error() {
					t.Fatalf("the error depends on the value: %v, and for another value %v", err, other)
				}
			}
			return
		}
		var got map[string]json.RawMessage
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("result %q is not a JSON object: %v", out, err)
		}
		var s string
		if err := json.Unmarshal(got[property], &s); err != nil || s != string(v) {
			t.Fatalf("property %q is %s, want %q", property, got[property], v)
		}
		before, _ := object(value, "")
		for k, raw := range before {
			if k == property {
				continue
			}
			var a bytes.Buffer
			_ = json.Compact(&a, raw)
			if a.String() != string(got[k]) {
				t.Fatalf("field %q changed from %s to %s", k, raw, got[k])
			}
		}
	})
}

// FuzzOwnerTags: the tags Veil writes for an owner read back as that
// owner's, and as no other owner's, whatever the names.
func FuzzOwnerTags(f *testing.F) {
	f.Add("team-a", "app", "uid-1", "team-b", "uid-2")
	f.Add("", "", "", "x", "")
	f.Fuzz(func(t *testing.T, ns, name, uid, otherNS, otherUID string) {
		o := providers.Owner{Namespace: ns, Name: name, UID: uid}
		var cur current
		for _, tag := range ownerTags(o) {
			cur.tag(tag[0], tag[1])
		}
		if uid != "" && (!cur.owned() || !cur.ownedBy(o)) {
			t.Fatalf("tags of %+v do not read back as its own", o)
		}
		other := providers.Owner{Namespace: otherNS, UID: otherUID}
		if (otherNS != ns || otherUID != uid) && cur.ownedBy(other) {
			t.Fatalf("tags of %+v read as owned by %+v", o, other)
		}
	})
}
