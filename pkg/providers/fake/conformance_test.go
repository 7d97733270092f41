package fake

import (
	"os"
	"strconv"
	"sync"
	"testing"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/test/conformance"
	"github.com/veil-dev/veil/test/conformance/remotetest"
)

func TestMain(m *testing.M) {
	remotetest.ServeIfChild()
	os.Exit(m.Run())
}

// TestConformance runs the provider conformance suite against a fake store.
func TestConformance(t *testing.T) { conformance.Run(t, &fixture{}) }

// TestConformanceRemote runs it against the same store served out of
// process, by veil-provider over gRPC with mutual TLS.
func TestConformanceRemote(t *testing.T) { remotetest.Run(t, &fixture{}) }

// fixture is a fake store whose spec the suite writes: the fake provider's
// values are its store's spec. Each write is kept as a numbered version and
// as the latest value, which has no version.
type fixture struct {
	mu       sync.Mutex
	data     []configv1alpha1.FakeProviderData
	versions map[string]int
}

func (f *fixture) Info() conformance.Info {
	readOnly := "the fake provider's values are its store's spec, which veil-apiserver never writes"
	return conformance.Info{
		MissingVersion: "no-such-version",
		Unsupported: map[conformance.Capability]string{
			conformance.Tags:            "the fake provider's values have no tags",
			conformance.BatchGet:        "the fake provider reads one value a call, from memory",
			conformance.ChangeDetection: "the fake provider's values change only with its store's spec, which marks every reader",
			conformance.Push:            readOnly,
			conformance.PushProperty:    readOnly,
			conformance.Delete:          readOnly,
			conformance.Forbidden:       "the fake provider has no credentials: every client reads its spec",
			conformance.Outage:          "the fake provider has no server: its values are in the client",
		},
	}
}

func (f *fixture) Store(*testing.T) conformance.Store {
	f.mu.Lock()
	defer f.mu.Unlock()
	data := append([]configv1alpha1.FakeProviderData(nil), f.data...)
	return conformance.Store{Spec: configv1alpha1.SecretStoreSpec{Provider: configv1alpha1.SecretStoreProvider{Fake: &configv1alpha1.FakeProvider{Data: data}}}}
}

func (f *fixture) Seed(_ *testing.T, key string, value []byte) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.versions == nil {
		f.versions = map[string]int{}
	}
	f.versions[key]++
	version := strconv.Itoa(f.versions[key])
	kept := f.data[:0]
	for _, d := range f.data {
		if d.Key != key || d.Version != "" {
			kept = append(kept, d)
		}
	}
	f.data = append(kept,
		configv1alpha1.FakeProviderData{Key: key, Value: string(value)},
		configv1alpha1.FakeProviderData{Key: key, Value: string(value), Version: version})
	return version
}
