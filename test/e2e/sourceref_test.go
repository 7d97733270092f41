package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
)

// fromStore is a data entry read from its own store (sourceRef.storeRef).
func fromStore(d configv1alpha1.ExternalSecretData, store configv1alpha1.SecretStoreRef) configv1alpha1.ExternalSecretData {
	d.SourceRef = &configv1alpha1.StoreSourceRef{StoreRef: &store}
	return d
}

func createES(t *testing.T, es *configv1alpha1.ExternalSecret) {
	t.Helper()
	if _, err := cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(es.Namespace).Create(ctxFor(t), es, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestSourceStoreRef: data and dataFrom entries read from their own
// stores (sourceRef.storeRef), a Vault ClusterSecretStore shared with a key
// scope beside a namespace's own store. Each store is held to the rules
// of spec.secretStoreRef: the ClusterSecretStore's namespaces and key
// scope (refused before any request reaches Vault), the bound on stores,
// and the admission policy's `use` on every store named.
func TestSourceStoreRef(t *testing.T) {
	ctx := ctxFor(t)
	v := startVault(t)
	teamA, teamB := newNamespace(t, nil), newNamespace(t, nil)
	shared := sharedVaultStore(t, v, configv1alpha1.ClusterSecretStoreCondition{Namespaces: []string{teamA}, RemoteKeyPrefix: "teams/{namespace}/"})
	prefixA, prefixB := "teams/"+teamA+"/", "teams/"+teamB+"/"
	canaryA, canaryB := unique("sourceref-a-"), unique("sourceref-b-")
	for key, value := range map[string]string{prefixA + "db": canaryA, prefixB + "db": canaryB} {
		if _, err := v.PutKV(ctx, "secret", key, map[string]any{"password": value, "user": "app"}); err != nil {
			t.Fatal(err)
		}
	}
	for _, ns := range []string{teamA, teamB} {
		createFakeStore(t, ns, "store", configv1alpha1.FakeProviderData{Key: "app/token", Value: "token-1"})
	}

	// spec.secretStoreRef for one entry, the shared Vault store for
	// another and for a dataFrom.extract.
	createES(t, &configv1alpha1.ExternalSecret{
		ObjectMeta: metav1.ObjectMeta{Name: "mixed", Namespace: teamA},
		Spec: configv1alpha1.ExternalSecretSpec{
			SecretStoreRef: new(storeRef("store")),
			Data: []configv1alpha1.ExternalSecretData{
				dataRef("token", "app/token", ""),
				fromStore(dataRef("password", prefixA+"db", "password"), shared),
			},
			DataFrom: []configv1alpha1.ExternalSecretDataFromRemoteRef{{
				Extract:   &configv1alpha1.ExternalSecretDataRemoteRef{Key: prefixA + "db"},
				SourceRef: &configv1alpha1.StoreSourceRef{StoreRef: &shared},
			}},
		},
	})
	got := mustValue(t, teamA, "mixed")
	wantData(t, got, map[string]string{"token": "token-1", "password": canaryA, "user": "app"})
	if got.Source.StoreRef.Name != "store" || got.Source.StoreRef.Kind != "SecretStore" {
		t.Errorf("source store %+v, want spec.secretStoreRef", got.Source.StoreRef)
	}

	// Without spec.secretStoreRef: every entry names its store.
	createES(t, &configv1alpha1.ExternalSecret{
		ObjectMeta: metav1.ObjectMeta{Name: "no-default", Namespace: teamA},
		Spec: configv1alpha1.ExternalSecretSpec{Data: []configv1alpha1.ExternalSecretData{
			fromStore(dataRef("token", "app/token", ""), storeRef("store")),
			fromStore(dataRef("password", prefixA+"db", "password"), shared),
		}},
	})
	wantData(t, mustValue(t, teamA, "no-default"), map[string]string{"token": "token-1", "password": canaryA})
	_, err := cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(teamA).Create(ctx, &configv1alpha1.ExternalSecret{
		ObjectMeta: metav1.ObjectMeta{Name: "no-store", Namespace: teamA},
		Spec: configv1alpha1.ExternalSecretSpec{Data: []configv1alpha1.ExternalSecretData{
			fromStore(dataRef("token", "app/token", ""), storeRef("store")),
			dataRef("other", "app/token", ""),
		}},
	}, metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "without spec.secretStoreRef, every data and dataFrom entry must name its store") {
		t.Errorf("an entry with no store: %v, want 422 naming the rule", err)
	}
	_, err = cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(teamA).Create(ctx, &configv1alpha1.ExternalSecret{
		ObjectMeta: metav1.ObjectMeta{Name: "generator", Namespace: teamA},
		Spec: configv1alpha1.ExternalSecretSpec{SecretStoreRef: new(storeRef("store")), DataFrom: []configv1alpha1.ExternalSecretDataFromRemoteRef{{
			SourceRef: &configv1alpha1.StoreSourceRef{GeneratorRef: &configv1alpha1.GeneratorRef{Kind: "Password", Name: "p"}},
		}}},
	}, metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "an ExternalSecret cannot read a generator (sourceRef.generatorRef)") {
		t.Errorf("a generatorRef: %v, want 422 saying generators are not supported", err)
	}

	// The shared store's key scope and namespaces hold for an entry as for
	// spec.secretStoreRef, before any request reaches Vault.
	reads := veilMetricsSince(t)
	createES(t, &configv1alpha1.ExternalSecret{
		ObjectMeta: metav1.ObjectMeta{Name: "scope", Namespace: teamA},
		Spec: configv1alpha1.ExternalSecretSpec{
			SecretStoreRef: new(storeRef("store")),
			Data: []configv1alpha1.ExternalSecretData{
				dataRef("token", "app/token", ""),
				fromStore(dataRef("password", prefixB+"db", "password"), shared),
			},
		},
	})
	err = valueError(t, teamA, "scope", apierrors.IsForbidden, fmt.Sprintf("remote keys under %q", prefixA))
	createES(t, &configv1alpha1.ExternalSecret{
		ObjectMeta: metav1.ObjectMeta{Name: "other-namespace", Namespace: teamB},
		Spec: configv1alpha1.ExternalSecretSpec{
			SecretStoreRef: new(storeRef("store")),
			Data: []configv1alpha1.ExternalSecretData{
				dataRef("token", "app/token", ""),
				fromStore(dataRef("password", prefixB+"db", "password"), shared),
			},
		},
	})
	err2 := valueError(t, teamB, "other-namespace", apierrors.IsForbidden, shared.Name)
	for _, e := range []error{err, err2} {
		if strings.Contains(e.Error(), canaryB) || strings.Contains(e.Error(), "token-1") {
			t.Errorf("a refusal carries a value: %v", e)
		}
	}
	if d := vaultTraffic(reads, "kv-get", "kv-list", "kv-metadata"); d != 0 {
		t.Errorf("refused reads made %v requests to Vault", d)
	}

	// At most MaxStoresPerExternalSecret distinct stores, as the admission
	// policy checks `use` on each (veil-apiserver refuses more too).
	many := &configv1alpha1.ExternalSecret{ObjectMeta: metav1.ObjectMeta{Name: "many", Namespace: teamA}}
	for i := range configv1alpha1.MaxStoresPerExternalSecret + 1 {
		name := fmt.Sprintf("s%d", i)
		createFakeStore(t, teamA, name, configv1alpha1.FakeProviderData{Key: "k", Value: "v"})
		many.Spec.Data = append(many.Spec.Data, fromStore(dataRef(name, "k", ""), storeRef(name)))
	}
	_, err = cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(teamA).Create(ctx, many, metav1.CreateOptions{})
	refused(t, "six stores", err, "veil-externalsecrets", fmt.Sprintf("reads from %d stores", configv1alpha1.MaxStoresPerExternalSecret+1),
		fmt.Sprintf("more than the %d one ExternalSecret may", configv1alpha1.MaxStoresPerExternalSecret))
	many.Spec.Data = many.Spec.Data[:configv1alpha1.MaxStoresPerExternalSecret]
	many.Name = "enough"
	createES(t, many)
	if v := mustValue(t, teamA, "enough"); len(v.Data) != configv1alpha1.MaxStoresPerExternalSecret {
		t.Errorf("%d stores: %d keys, want %d", configv1alpha1.MaxStoresPerExternalSecret, len(v.Data), configv1alpha1.MaxStoresPerExternalSecret)
	}

	// A tenant allowed to use its namespace's SecretStore, not the shared
	// one, cannot reach the shared one through an entry: not on create,
	// not by adding an entry, not without spec.secretStoreRef.
	eve := impersonate(t, unique("eve-"))
	bindBuiltIn(t, teamA, eve.name, "edit")
	bind(t, teamA, eve.name, "veil:store-user")
	waitAllowed(t, eve.name, useAttrs(teamA, "secretstores", "store"), true)
	create := func(es *configv1alpha1.ExternalSecret) error {
		_, err := eve.veil.ConfigV1alpha1().ExternalSecrets(teamA).Create(ctx, es, metav1.CreateOptions{})
		return err
	}
	own := &configv1alpha1.ExternalSecret{
		ObjectMeta: metav1.ObjectMeta{Name: "eve", Namespace: teamA},
		Spec:       configv1alpha1.ExternalSecretSpec{SecretStoreRef: new(storeRef("store")), Data: []configv1alpha1.ExternalSecretData{dataRef("token", "app/token", "")}},
	}
	if err := create(own.DeepCopy()); err != nil {
		t.Fatalf("edit with veil:store-user, its namespace's store only: %v", err)
	}
	sneaky := own.DeepCopy()
	sneaky.Name = "eve-shared"
	sneaky.Spec.Data = append(sneaky.Spec.Data, fromStore(dataRef("password", prefixA+"db", "password"), shared))
	refused(t, "an entry naming a ClusterSecretStore not granted", create(sneaky), "veil-externalsecrets",
		"may not use clustersecretstores/"+shared.Name, "resourceNames: ["+shared.Name+"]")
	sneaky.Name, sneaky.Spec.SecretStoreRef = "eve-no-default", nil
	sneaky.Spec.Data[0] = fromStore(sneaky.Spec.Data[0], storeRef("store"))
	refused(t, "no spec.secretStoreRef, an entry naming a ClusterSecretStore not granted", create(sneaky), "veil-externalsecrets",
		"may not use clustersecretstores/"+shared.Name)
	sneaky.Name = "eve-from"
	sneaky.Spec.SecretStoreRef = new(storeRef("store"))
	sneaky.Spec.Data = sneaky.Spec.Data[:1]
	sneaky.Spec.DataFrom = []configv1alpha1.ExternalSecretDataFromRemoteRef{{
		Extract: &configv1alpha1.ExternalSecretDataRemoteRef{Key: prefixA + "db"}, SourceRef: &configv1alpha1.StoreSourceRef{StoreRef: &shared},
	}}
	refused(t, "a dataFrom entry naming a ClusterSecretStore not granted", create(sneaky), "veil-externalsecrets",
		"may not use clustersecretstores/"+shared.Name)
	for _, n := range []string{"eve-shared", "eve-no-default", "eve-from"} {
		esAbsent(t, teamA, n)
	}
	es, err := eve.veil.ConfigV1alpha1().ExternalSecrets(teamA).Get(ctx, "eve", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	es.Spec.Data = append(es.Spec.Data, fromStore(dataRef("password", prefixA+"db", "password"), shared))
	_, err = eve.veil.ConfigV1alpha1().ExternalSecrets(teamA).Update(ctx, es, metav1.UpdateOptions{})
	refused(t, "adding an entry naming a ClusterSecretStore not granted", err, "veil-externalsecrets", "may not use clustersecretstores/"+shared.Name)
	// Granted by name, the same entry is taken.
	grantUse(t, teamA, eve.name, "clustersecretstores", shared.Name)
	eventually(t, func() error {
		es, err := eve.veil.ConfigV1alpha1().ExternalSecrets(teamA).Get(ctx, "eve", metav1.GetOptions{})
		if err != nil {
			return err
		}
		es.Spec.Data = append(es.Spec.Data, fromStore(dataRef("password", prefixA+"db", "password"), shared))
		_, err = eve.veil.ConfigV1alpha1().ExternalSecrets(teamA).Update(ctx, es, metav1.UpdateOptions{})
		return err
	})

	// veil-syncer materialises entries from several stores, and a value
	// changed in one store reaches the Secret.
	startSyncer(t)
	createES(t, &configv1alpha1.ExternalSecret{
		ObjectMeta: metav1.ObjectMeta{Name: "synced", Namespace: teamA},
		Spec: configv1alpha1.ExternalSecretSpec{
			SecretStoreRef:  new(storeRef("store")),
			RefreshInterval: &metav1.Duration{Duration: time.Second},
			Target:          &configv1alpha1.ExternalSecretTarget{},
			Data: []configv1alpha1.ExternalSecretData{
				dataRef("token", "app/token", ""),
				fromStore(dataRef("password", prefixA+"db", "password"), shared),
			},
		},
	})
	waitSecret(t, teamA, "synced", hasData(map[string]string{"token": "token-1", "password": canaryA}))
	rotated := unique("sourceref-rotated-")
	if _, err := v.PutKV(ctx, "secret", prefixA+"db", map[string]any{"password": rotated, "user": "app"}); err != nil {
		t.Fatal(err)
	}
	waitSecret(t, teamA, "synced", hasData(map[string]string{"token": "token-1", "password": rotated}))

	sightings, err := cluster.FindCanary(ctx, canaryB)
	if err != nil {
		t.Fatal(err)
	}
	if sightings.InFiles() != 0 || len(sightings.EtcdKeys) != 0 {
		t.Errorf("tenant B's value, never readable by A, was seen: %s", sightings)
	}
	sightings, err = cluster.FindCanary(ctx, canaryA)
	if err != nil {
		t.Fatal(err)
	}
	if sightings.InFiles() != 0 {
		t.Errorf("tenant A's value in logs: %s", sightings)
	}
}
