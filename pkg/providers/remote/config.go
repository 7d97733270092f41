package remote

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"k8s.io/klog/v2"
	"sigs.k8s.io/yaml"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/providers"
)

// Config is a provider process's own configuration (veil-provider
// --config): the only stores it serves, each with the backend it reads and
// the credentials it reads it with. veil-apiserver sends store names and
// keys, never a spec or a credential, so a compromised veil-apiserver can
// reach no store, key or backend that this file does not name.
type Config struct {
	Stores []StoreConfig `json:"stores"`
}

// StoreConfig is one store served.
type StoreConfig struct {
	// Kind, Namespace and Name are the SecretStore or ClusterSecretStore
	// of veil-apiserver this entry serves (Namespace empty for a
	// ClusterSecretStore).
	Kind      configv1alpha1.StoreKind `json:"kind"`
	Namespace string                   `json:"namespace,omitempty"`
	Name      string                   `json:"name"`
	// KeyPrefixes are the remote keys served: a key, or a find's path,
	// must start with one of them. "" serves every key the backend
	// credentials can read, and must be written to mean it.
	KeyPrefixes []string `json:"keyPrefixes"`
	// Provider is the backend, as in a store's spec.provider; it must be
	// of the kind this process serves.
	Provider configv1alpha1.SecretStoreProvider `json:"provider"`
	// CredentialsDir holds the files the provider block refers to, as
	// mounted Secrets and ConfigMaps lay them out: secrets/NAME/KEY,
	// configmaps/NAME/KEY, and serviceaccounts/NAME/token (a projected
	// service-account token, which the kubelet refreshes).
	CredentialsDir string `json:"credentialsDir,omitempty"`
	// Limits bound what veil-apiserver may ask of this store.
	Limits Limits `json:"limits,omitempty"`

	// fp is fingerprint(), computed once when the file is read: calls
	// compare it on the read path.
	fp [sha256.Size]byte
}

// Limits of one store. Zero fields take the defaults.
type Limits struct {
	// QPS and Burst: calls per second the store admits, on average and at
	// once. Default 50 and 100.
	QPS   float64 `json:"qps,omitempty"`
	Burst int     `json:"burst,omitempty"`
	// Concurrency: calls in flight at once. Default 32.
	Concurrency int `json:"concurrency,omitempty"`
	// Streams: change streams (WatchChanges) open at once. Default 4.
	Streams int `json:"streams,omitempty"`
}

func (l Limits) withDefaults() Limits {
	if l.QPS == 0 {
		l.QPS = 50
	}
	if l.Burst == 0 {
		l.Burst = 100
	}
	if l.Concurrency == 0 {
		l.Concurrency = 32
	}
	if l.Streams == 0 {
		l.Streams = 4
	}
	return l
}

func (s *StoreConfig) ref() storeKey {
	return storeKey{kind: string(s.Kind), namespace: s.Namespace, name: s.Name}
}

// storeKey names a store of the configuration.
type storeKey struct{ kind, namespace, name string }

func (k storeKey) String() string {
	if k.namespace == "" {
		return k.kind + " " + k.name
	}
	return k.kind + " " + k.namespace + "/" + k.name
}

// ParseConfig reads a configuration for a process serving provider.
func ParseConfig(data []byte, provider string) (*Config, error) {
	var c Config
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return nil, err
	}
	seen := map[storeKey]bool{}
	var errs []error
	for i := range c.Stores {
		s := &c.Stores[i]
		where := fmt.Sprintf("stores[%d] (%s)", i, s.ref())
		switch {
		case s.Kind != configv1alpha1.SecretStoreKind && s.Kind != configv1alpha1.ClusterSecretStoreKind:
			errs = append(errs, fmt.Errorf("%s: kind must be SecretStore or ClusterSecretStore", where))
		case s.Kind == configv1alpha1.SecretStoreKind && s.Namespace == "":
			errs = append(errs, fmt.Errorf("%s: a SecretStore needs its namespace", where))
		case s.Kind == configv1alpha1.ClusterSecretStoreKind && s.Namespace != "":
			errs = append(errs, fmt.Errorf("%s: a ClusterSecretStore has no namespace", where))
		}
		if s.Name == "" {
			errs = append(errs, fmt.Errorf("%s: name is empty", where))
		}
		if len(s.KeyPrefixes) == 0 {
			errs = append(errs, fmt.Errorf(`%s: keyPrefixes is empty; name the remote key prefixes this store may read, or [""] for every key its credentials can read`, where))
		}
		if got := providers.NameOf(&configv1alpha1.SecretStoreSpec{Provider: s.Provider}); got != provider {
			errs = append(errs, fmt.Errorf("%s: provider block %q, but this process serves %q", where, got, provider))
		}
		if l := s.Limits; l.QPS < 0 || l.Burst < 0 || l.Concurrency < 0 || l.Streams < 0 {
			errs = append(errs, fmt.Errorf("%s: limits must not be negative", where))
		}
		if seen[s.ref()] {
			errs = append(errs, fmt.Errorf("%s: the store is configured twice", where))
		}
		seen[s.ref()] = true
		s.fp = s.fingerprint()
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &c, nil
}

// configFile is a Config read from a file, read again when the file
// changes, so stores are added, removed or given new credentials without a
// restart. A change that does not parse keeps the previous configuration.
type configFile struct {
	path, provider string

	mu     sync.Mutex
	stamp  fileStamp
	cfg    *Config
	failed fileStamp
}

func loadConfigFile(path, provider string) (*configFile, error) {
	f := &configFile{path: path, provider: provider}
	st, err := stampOf(path)
	if err != nil {
		return nil, err
	}
	if err := f.load(st); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *configFile) load(st fileStamp) error {
	data, err := os.ReadFile(f.path)
	if err != nil {
		return err
	}
	cfg, err := ParseConfig(data, f.provider)
	if err != nil {
		return fmt.Errorf("%s: %w", f.path, err)
	}
	f.cfg, f.stamp = cfg, st
	return nil
}

func (f *configFile) current() *Config {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, err := stampOf(f.path)
	if err == nil && st != f.stamp {
		if err = f.load(st); err != nil && st != f.failed {
			f.failed = st
			klog.ErrorS(err, "Keeping the previous configuration: the changed file cannot be used", "config", f.path)
		}
	}
	return f.cfg
}

// fileCredentials reads a store's credentials from its CredentialsDir,
// and remembers what it read, so that a rotated file builds a new client.
type fileCredentials struct {
	dir   string
	store string

	mu   sync.Mutex
	read map[string]fileStamp
}

var _ providers.Credentials = &fileCredentials{}

func newFileCredentials(s *StoreConfig) *fileCredentials {
	return &fileCredentials{dir: s.CredentialsDir, store: s.ref().String(), read: map[string]fileStamp{}}
}

// segment refuses names that would leave the directory.
func segment(what, v string) error {
	if v == "" || v == "." || v == ".." || strings.ContainsAny(v, `/\`) {
		return providers.Errorf(providers.Invalid, "%s %q is not a valid name", what, v)
	}
	return nil
}

func (c *fileCredentials) file(parts ...string) ([]byte, error) {
	if c.dir == "" {
		return nil, providers.Errorf(providers.Invalid, "%s refers to credentials, but its configuration has no credentialsDir", c.store)
	}
	path := filepath.Join(append([]string{c.dir}, parts...)...)
	st, err := stampOf(path)
	if err == nil {
		var b []byte
		if b, err = os.ReadFile(path); err == nil {
			c.mu.Lock()
			c.read[path] = st
			c.mu.Unlock()
			return b, nil
		}
	}
	return nil, providers.Wrap(providers.Invalid, err, "%s: cannot read credential file %s", c.store, path)
}

func (c *fileCredentials) SecretKey(_ context.Context, sel configv1alpha1.SecretKeySelector) ([]byte, error) {
	if err := errors.Join(segment("secret name", sel.Name), segment("secret key", sel.Key)); err != nil {
		return nil, err
	}
	return c.file("secrets", sel.Name, sel.Key)
}

func (c *fileCredentials) ConfigMapKey(_ context.Context, name, key string, _ *string) ([]byte, error) {
	if err := errors.Join(segment("configmap name", name), segment("configmap key", key)); err != nil {
		return nil, err
	}
	return c.file("configmaps", name, key)
}

func (c *fileCredentials) ServiceAccountToken(_ context.Context, sel configv1alpha1.ServiceAccountSelector, _ int64) (string, error) {
	if err := segment("service account name", sel.Name); err != nil {
		return "", err
	}
	b, err := c.file("serviceaccounts", sel.Name, "token")
	return strings.TrimSpace(string(b)), err
}

// changed says whether a file read since has changed or gone.
func (c *fileCredentials) changed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for path, was := range c.read {
		if st, err := stampOf(path); err != nil || st != was {
			return true
		}
	}
	return false
}

// fingerprint identifies a store's configuration entry, to tell when it
// changed. It is a hash: a fake store's entry holds values.
func (s *StoreConfig) fingerprint() [sha256.Size]byte {
	b, _ := json.Marshal(s)
	return sha256.Sum256(b)
}
