package changes

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	configclient "github.com/veil-dev/veil/pkg/generated/clientset/versioned/typed/config/v1alpha1"
	configlisters "github.com/veil-dev/veil/pkg/generated/listers/config/v1alpha1"
)

// FieldManager owns status.lastValueChange of ExternalSecrets.
const FieldManager = "veil-apiserver-changes"

// maxKeysNamed bounds the keys one status names (the CRD allows 10).
const maxKeysNamed = 10

// parallelMarks bounds the status writes one Mark makes at once.
const parallelMarks = 8

// informerWait bounds how long Mark waits for its own informer.
const informerWait = 5 * time.Second

// Store names a store the way an ExternalSecret's secretStoreRef does,
// with the namespace of a SecretStore.
type Store struct {
	Kind      configv1alpha1.StoreKind
	Namespace string // empty for a ClusterSecretStore
	Name      string
}

func (s Store) String() string {
	if s.Namespace == "" {
		return string(s.Kind) + " " + s.Name
	}
	return string(s.Kind) + " " + s.Namespace + "/" + s.Name
}

// StoreOf is the store ref names for an ExternalSecret of namespace.
func StoreOf(namespace string, ref configv1alpha1.SecretStoreRef) Store {
	if ref.Kind == configv1alpha1.ClusterSecretStoreKind {
		return Store{Kind: ref.Kind, Name: ref.Name}
	}
	return Store{Kind: configv1alpha1.SecretStoreKind, Namespace: namespace, Name: ref.Name}
}

// Reads is what es reads through each store it names
// (spec.secretStoreRef, and sourceRef.storeRef of its entries): for each,
// es with only the entries read through it.
func Reads(es *configv1alpha1.ExternalSecret) map[Store]*configv1alpha1.ExternalSecret {
	out := map[Store]*configv1alpha1.ExternalSecret{}
	for _, ref := range es.StoreRefs() {
		out[StoreOf(es.Namespace, ref)] = es.ReadThrough(ref)
	}
	return out
}

// Marker writes value changes into the status of the ExternalSecrets
// that read the changed keys.
type Marker struct {
	ExternalSecrets configlisters.ExternalSecretLister
	Client          configclient.ExternalSecretsGetter
	Clock           clock.PassiveClock
	// Admits says whether namespace may read key through store (its key
	// scope on a ClusterSecretStore); nil admits all. An ExternalSecret is
	// never told of a change to a key its namespace may not read, which
	// would tell it about another tenant's keys.
	Admits func(ctx context.Context, namespace string, store Store, key string) bool
	// Serves says whether the values of es are served at all (a
	// ClusterExternalSecret's ExternalSecret only as it says); nil serves
	// all. One not served is neither told of changes nor has its keys
	// watched for them: its status would tell when a key it may not read
	// changes.
	Serves func(es *configv1alpha1.ExternalSecret) bool
}

// serves applies Serves.
func (m *Marker) serves(es *configv1alpha1.ExternalSecret) bool {
	return m.Serves == nil || m.Serves(es)
}

// Mark records that keys (every key, when keys is nil) changed in store,
// in every ExternalSecret that reads one of them through it. It returns
// how many it marked; the error is the first write that failed (the
// others are still made). An ExternalSecret deleted meanwhile is skipped.
func (m *Marker) Mark(ctx context.Context, store Store, keys []string, cause configv1alpha1.ValueChangeCause) (int, error) {
	var ess []*configv1alpha1.ExternalSecret
	var err error
	if store.Kind == configv1alpha1.ClusterSecretStoreKind {
		ess, err = m.ExternalSecrets.List(labels.Everything())
	} else {
		ess, err = m.ExternalSecrets.ExternalSecrets(store.Namespace).List(labels.Everything())
	}
	if err != nil {
		return 0, err
	}
	// Each reader is told only the keys it reads (and its namespace may
	// read): never another ExternalSecret's, or another tenant's, key names.
	type target struct {
		es     *configv1alpha1.ExternalSecret
		change configv1alpha1.ValueChange
	}
	id, now := newID(), metav1.NewTime(m.Clock.Now())
	var targets []target
	for _, es := range ess {
		through, ok := Reads(es)[store]
		if !ok || !m.serves(es) {
			continue
		}
		change := configv1alpha1.ValueChange{ID: id, Time: now, Cause: cause}
		if keys != nil {
			mine := readKeys(through, keys)
			if m.Admits != nil {
				mine = slices.DeleteFunc(mine, func(k string) bool { return !m.Admits(ctx, es.Namespace, store, k) })
			}
			if len(mine) == 0 {
				continue
			}
			change.Keys, change.MoreKeys = named(mine)
		}
		targets = append(targets, target{es: es, change: change})
	}
	if len(targets) == 0 {
		return 0, nil
	}

	var (
		mu     sync.Mutex
		marked int
		first  error
		wg     sync.WaitGroup
		slots  = make(chan struct{}, parallelMarks)
	)
	for _, tg := range targets {
		es := tg.es
		wg.Add(1)
		slots <- struct{}{}
		go func() {
			defer func() { <-slots; wg.Done() }()
			err := m.mark(ctx, es, tg.change)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				marked++
			case apierrors.IsNotFound(err):
			case first == nil:
				first = fmt.Errorf("recording a value change in ExternalSecret %s/%s: %w", es.Namespace, es.Name, err)
			}
		}()
	}
	wg.Wait()
	marks := make([]*configv1alpha1.ExternalSecret, len(targets))
	for i, tg := range targets {
		marks[i] = tg.es
	}
	m.awaitInformer(ctx, marks, id)
	return marked, first
}

// maxKeyNameLength bounds a key name written in a status (the CRD's
// bound); a longer one is counted in MoreKeys instead.
const maxKeyNameLength = 512

// named returns the keys a status names, sorted, at most maxKeysNamed of
// at most maxKeyNameLength bytes, and how many it leaves out.
func named(keys []string) ([]string, int32) {
	keys = slices.Compact(slices.Sorted(slices.Values(keys)))
	var out []string
	for _, k := range keys {
		if len(out) < maxKeysNamed && len(k) <= maxKeyNameLength {
			out = append(out, k)
		}
	}
	return out, int32(len(keys) - len(out))
}

// awaitInformer waits (up to informerWait) until this process's informer
// has every ExternalSecret with the change. kube-apiserver sends that
// event to every replica's watch at the same time, so once this replica
// has it a read that starts after Mark returns, on any replica, is
// answered with the values read after the change; without the wait the
// answer to a push could overtake the news of it.
func (m *Marker) awaitInformer(ctx context.Context, ess []*configv1alpha1.ExternalSecret, id string) {
	ctx, cancel := context.WithTimeout(ctx, informerWait)
	defer cancel()
	pending := ess
	for {
		still := pending[:0:0]
		for _, es := range pending {
			cur, err := m.ExternalSecrets.ExternalSecrets(es.Namespace).Get(es.Name)
			if err != nil || cur.UID != es.UID {
				continue // deleted or replaced: nothing to wait for
			}
			if c := cur.Status.LastValueChange; c == nil || c.ID != id {
				still = append(still, es)
			}
		}
		if pending = still; len(pending) == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// mark applies status.lastValueChange of es, as its own field manager:
// veil-syncer's status fields are left alone, and a concurrent write of
// theirs does not make this one fail.
func (m *Marker) mark(ctx context.Context, es *configv1alpha1.ExternalSecret, change configv1alpha1.ValueChange) error {
	body, err := json.Marshal(map[string]any{
		"apiVersion": configv1alpha1.SchemeGroupVersion.String(),
		"kind":       "ExternalSecret",
		"metadata":   map[string]any{"name": es.Name, "namespace": es.Namespace, "uid": es.UID},
		"status":     map[string]any{"lastValueChange": change},
	})
	if err != nil {
		return err
	}
	force := true
	_, err = m.Client.ExternalSecrets(es.Namespace).Patch(ctx, es.Name, types.ApplyPatchType, body,
		metav1.PatchOptions{FieldManager: FieldManager, Force: &force}, "status")
	return err
}

// readKeys returns the keys of keys that es reads. A dataFrom.find reads
// every key under its path.
func readKeys(es *configv1alpha1.ExternalSecret, keys []string) []string {
	names := Keys(es)
	var paths []string
	for _, d := range es.Spec.DataFrom {
		if d.Find != nil {
			path := ""
			if d.Find.Path != nil {
				path = strings.Trim(*d.Find.Path, "/")
			}
			paths = append(paths, path)
		}
	}
	var out []string
	for _, k := range keys {
		if slices.Contains(names, k) || slices.ContainsFunc(paths, func(p string) bool { return strings.HasPrefix(strings.Trim(k, "/"), p) }) {
			out = append(out, k)
		}
	}
	return out
}

// Keys are the remote keys es names (not those a find may match).
func Keys(es *configv1alpha1.ExternalSecret) []string {
	var keys []string
	for _, d := range es.Spec.Data {
		keys = append(keys, d.RemoteRef.Key)
	}
	for _, d := range es.Spec.DataFrom {
		if d.Extract != nil {
			keys = append(keys, d.Extract.Key)
		}
	}
	return keys
}

func newID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
