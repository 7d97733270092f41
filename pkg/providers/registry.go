package providers

import (
	"fmt"
	"sort"
	"sync"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
)

var (
	mu       sync.RWMutex
	registry = map[string]Provider{}
)

// Register makes a provider available; provider packages call it from init.
func Register(p Provider) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := registry[p.Name()]; dup {
		panic(fmt.Sprintf("provider %q registered twice", p.Name()))
	}
	registry[p.Name()] = p
}

// For returns the provider a store spec names.
func For(spec *configv1alpha1.SecretStoreSpec) (Provider, error) {
	name := NameOf(spec)
	if name == "" {
		return nil, Errorf(Invalid, "spec.provider names no provider; set exactly one of %v", Names())
	}
	mu.RLock()
	p, ok := registry[name]
	mu.RUnlock()
	if !ok {
		return nil, Errorf(Invalid, "provider %q is not built into this veil-apiserver; it has %v", name, Names())
	}
	return p, nil
}

// NameOf returns the key of the provider block a store spec sets.
func NameOf(spec *configv1alpha1.SecretStoreSpec) string {
	switch p := spec.Provider; {
	case p.Vault != nil:
		return "vault"
	case p.AWS != nil:
		return "aws"
	case p.Fake != nil:
		return "fake"
	case p.Remote != nil:
		return "remote"
	}
	return ""
}

// Names lists the registered providers.
func Names() []string {
	mu.RLock()
	defer mu.RUnlock()
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Override puts p in the place of the provider registered under its name,
// until restore is called. It is for tests that serve a provider kind out
// of process (pkg/providers/remote) from a binary that also links it: the
// stores of that kind then reach it over the protocol.
func Override(p Provider) (restore func()) {
	mu.Lock()
	defer mu.Unlock()
	old, ok := registry[p.Name()]
	if !ok {
		panic(fmt.Sprintf("provider %q is not registered: there is nothing to override", p.Name()))
	}
	registry[p.Name()] = p
	return func() {
		mu.Lock()
		defer mu.Unlock()
		registry[p.Name()] = old
	}
}
