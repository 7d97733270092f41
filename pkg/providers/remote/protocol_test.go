package remote

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	providerv1 "github.com/veil-dev/veil/pkg/providers/remote/proto/veil/provider/v1"
)

// TestProtocolV1IsFrozen guards the wire format of veil.provider.v1 that
// providers built against it rely on: every field and method listed in
// testdata/v1-wire.txt keeps its number, name and type. New ones are
// added to the list when they are added to the .proto; a change that
// removes, renumbers or retypes one belongs in a v2 package.
func TestProtocolV1IsFrozen(t *testing.T) {
	b, err := os.ReadFile("testdata/v1-wire.txt")
	if err != nil {
		t.Fatal(err)
	}
	var frozen []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			frozen = append(frozen, l)
		}
	}
	current := wireOf(providerv1.File_veil_provider_v1_provider_proto)
	for _, l := range frozen {
		if !slices.Contains(current, l) {
			t.Errorf("veil.provider.v1 no longer has %q: removing, renumbering or retyping a field or method of v1 breaks the providers built against it; add it in a v2 package instead", l)
		}
	}
	for _, l := range current {
		if !slices.Contains(frozen, l) {
			t.Errorf("veil.provider.v1 has %q, which testdata/v1-wire.txt does not list: add it there, and it is frozen from then on", l)
		}
	}
}

// wireOf lists what the wire format of a file depends on, one line each.
func wireOf(fd protoreflect.FileDescriptor) []string {
	var out []string
	var messages func(ms protoreflect.MessageDescriptors)
	messages = func(ms protoreflect.MessageDescriptors) {
		for i := range ms.Len() {
			m := ms.Get(i)
			if m.IsMapEntry() {
				continue
			}
			fields := m.Fields()
			for j := range fields.Len() {
				f := fields.Get(j)
				out = append(out, fmt.Sprintf("%s.%s = %d %s", m.FullName(), f.Name(), f.Number(), typeOf(f)))
			}
			messages(m.Messages())
		}
	}
	messages(fd.Messages())
	svcs := fd.Services()
	for i := range svcs.Len() {
		methods := svcs.Get(i).Methods()
		for j := range methods.Len() {
			m := methods.Get(j)
			stream := ""
			if m.IsStreamingServer() {
				stream = "stream "
			}
			out = append(out, fmt.Sprintf("rpc %s(%s) returns (%s%s)", m.FullName(), m.Input().FullName(), stream, m.Output().FullName()))
		}
	}
	return out
}

func typeOf(f protoreflect.FieldDescriptor) string {
	switch {
	case f.IsMap():
		return fmt.Sprintf("map<%s, %s>", typeOf(f.MapKey()), typeOf(f.MapValue()))
	case f.Message() != nil:
		return prefix(f) + string(f.Message().FullName())
	}
	return prefix(f) + f.Kind().String()
}

func prefix(f protoreflect.FieldDescriptor) string {
	if f.Cardinality() == protoreflect.Repeated && !f.IsMap() {
		return "repeated "
	}
	return ""
}
