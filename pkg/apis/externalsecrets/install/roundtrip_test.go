package install

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/apitesting/roundtrip"
	runtimeserializer "k8s.io/apimachinery/pkg/runtime/serializer"
)

// TestRoundTripTypes fills every type of externalsecrets.veil.dev with
// random values and checks that each survives internal → v1alpha1 → JSON
// and YAML → internal unchanged: a field the conversion drops, or one
// whose JSON tag loses it, fails here before a client notices.
func TestRoundTripTypes(t *testing.T) {
	roundtrip.RoundTripTestForAPIGroup(t, Install, fuzzerFuncs)
}

// fuzzerFuncs adds nothing to the generic fuzzers: no field of the group
// is constrained by conversion or defaulting, so every field is filled
// with arbitrary values (the action included, which only the registry
// validates) and a defect in any of them is not hidden.
func fuzzerFuncs(_ runtimeserializer.CodecFactory) []interface{} {
	return nil
}
