package kubeprovider

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// Config is the provider's own configuration (--config): the only stores
// it serves, each with the namespace (and cluster) whose Secrets it reads.
// veil-apiserver sends a store's name and keys, nothing else, so a
// compromised veil-apiserver can reach no namespace this file does not name.
type Config struct {
	Stores []StoreConfig `json:"stores"`
}

// StoreConfig is one store served.
type StoreConfig struct {
	// Kind, Namespace and Name are the SecretStore or ClusterSecretStore
	// of veil-apiserver this entry serves (no Namespace for a
	// ClusterSecretStore).
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	// Source is where the Secrets are read.
	Source Source `json:"source"`
	// PathSeparator, when ".", lets remote keys be paths: "team/db"
	// names the Secret "team.db", and a find reports that Secret as
	// "team/db". A key with a "." is then refused (write it with "/"), so
	// that every Secret has one key. Empty (the default): a remote key is
	// a Secret name as written, and a key with "/" is refused.
	PathSeparator string `json:"pathSeparator,omitempty"`
	// Limits bound what veil-apiserver may ask of this store.
	Limits Limits `json:"limits,omitempty"`

	fp [sha256.Size]byte
}

// Source is a namespace of a cluster.
type Source struct {
	// Namespace whose Secrets the store reads. The provider's identity
	// needs get, list and watch on secrets there (deploy/rbac.yaml), and
	// nothing else.
	Namespace string `json:"namespace"`
	// Kubeconfig reaches another cluster; empty is the cluster the
	// provider runs in, as its ServiceAccount. The file is read again
	// when it changes.
	Kubeconfig string `json:"kubeconfig,omitempty"`
}

// Limits of one store. Zero fields take the defaults.
type Limits struct {
	// QPS and Burst: calls per second the store admits, on average and at
	// once. Default 50 and 100.
	QPS   float64 `json:"qps,omitempty"`
	Burst int     `json:"burst,omitempty"`
	// Concurrency: calls in flight at once. Default 32.
	Concurrency int `json:"concurrency,omitempty"`
	// Watches: WatchChanges streams open at once. Default 4.
	Watches int `json:"watches,omitempty"`
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
	if l.Watches == 0 {
		l.Watches = 4
	}
	return l
}

// storeKey names a store of veil-apiserver.
type storeKey struct{ kind, namespace, name string }

func (k storeKey) String() string {
	if k.namespace == "" {
		return k.kind + " " + k.name
	}
	return k.kind + " " + k.namespace + "/" + k.name
}

func (s *StoreConfig) key() storeKey { return storeKey{s.Kind, s.Namespace, s.Name} }

// ParseConfig reads a configuration, YAML or JSON. Unknown fields are
// errors: a misspelt limit must not silently take the default.
func ParseConfig(data []byte) (*Config, error) {
	js, err := utilyaml.ToJSON(data)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	var c Config
	if err := dec.Decode(&c); err != nil {
		return nil, err
	}
	seen := map[storeKey]bool{}
	var errs []error
	for i := range c.Stores {
		s := &c.Stores[i]
		where := fmt.Sprintf("stores[%d] (%s)", i, s.key())
		switch {
		case s.Kind != "SecretStore" && s.Kind != "ClusterSecretStore":
			errs = append(errs, fmt.Errorf("%s: kind must be SecretStore or ClusterSecretStore", where))
		case s.Kind == "SecretStore" && s.Namespace == "":
			errs = append(errs, fmt.Errorf("%s: a SecretStore needs its namespace", where))
		case s.Kind == "ClusterSecretStore" && s.Namespace != "":
			errs = append(errs, fmt.Errorf("%s: a ClusterSecretStore has no namespace", where))
		}
		if s.Name == "" {
			errs = append(errs, fmt.Errorf("%s: name is empty", where))
		}
		if msgs := validation.IsDNS1123Label(s.Source.Namespace); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("%s: source.namespace %q is not a namespace name: %v", where, s.Source.Namespace, msgs))
		}
		if s.PathSeparator != "" && s.PathSeparator != "." {
			errs = append(errs, fmt.Errorf(`%s: pathSeparator must be "." or empty`, where))
		}
		if l := s.Limits; l.QPS < 0 || l.Burst < 0 || l.Concurrency < 0 || l.Watches < 0 {
			errs = append(errs, fmt.Errorf("%s: limits must not be negative", where))
		}
		if seen[s.key()] {
			errs = append(errs, fmt.Errorf("%s: the store is configured twice", where))
		}
		seen[s.key()] = true
		b, _ := json.Marshal(s)
		s.fp = sha256.Sum256(b)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &c, nil
}

func (c *Config) store(k storeKey) *StoreConfig {
	for i := range c.Stores {
		if c.Stores[i].key() == k {
			return &c.Stores[i]
		}
	}
	return nil
}

// fileStamp tells a file has changed. A Secret or ConfigMap volume swaps
// a symlink to a new directory: os.Stat follows it, so the swap shows as a
// new inode even when size and modification time are the same.
type fileStamp struct {
	mod  time.Time
	size int64
	ino  uint64
}

func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	st := fileStamp{mod: fi.ModTime(), size: fi.Size()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = sys.Ino
	}
	return st, nil
}

// configFile is a Config read again when its file changes. A change that
// does not parse keeps the previous configuration, and is logged once.
type configFile struct {
	path string
	log  *slog.Logger

	mu     sync.Mutex
	stamp  fileStamp
	cfg    *Config
	failed fileStamp
}

func loadConfigFile(path string, log *slog.Logger) (*configFile, error) {
	f := &configFile{path: path, log: log}
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
	cfg, err := ParseConfig(data)
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
			f.log.Error("keeping the previous configuration: the changed file cannot be used", "config", f.path, "err", err)
		}
	}
	return f.cfg
}
