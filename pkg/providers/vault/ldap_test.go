package vault

import (
	"context"
	"testing"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/providers"
	"github.com/veil-dev/veil/test/harness"
)

// ldapBackend starts slapd with a user, and enables Vault's LDAP auth
// method against it, granting the user's token a policy to read secret/.
func ldapBackend(t *testing.T, user, password string) (mount string) {
	t.Helper()
	ctx := ctxFor(t)
	l, err := harness.StartLDAP(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Stop)
	if err := l.AddUser(ctx, user, password); err != nil {
		t.Fatal(err)
	}
	mount = unique(t)
	if err := server.Policy(ctx, mount, `path "secret/data/*" { capabilities = ["read"] }`); err != nil {
		t.Fatal(err)
	}
	if err := server.EnableAuth(ctx, mount, "ldap"); err != nil {
		t.Fatal(err)
	}
	if _, err := server.Write(ctx, "auth/"+mount+"/config", map[string]any{
		"url": l.URL, "userdn": l.UsersDN, "userattr": "uid", "discoverdn": false, "token_policies": mount, "token_ttl": "1h",
	}); err != nil {
		t.Fatal(err)
	}
	return mount
}

func ldapSpec(mount, username string, password *configv1alpha1.SecretKeySelector) configv1alpha1.VaultProvider {
	return httpsSpec(configv1alpha1.VaultAuth{Ldap: &configv1alpha1.VaultLdapAuth{Path: mount, Username: username, SecretRef: *password}})
}

// TestLdapAuth logs in to Vault's LDAP method, which binds to a real slapd
// as the user, with the password of a Secret of the store's namespace; a
// wrong password, another namespace's Secret and names that would leave
// the login path are refused, none with the password in the error.
func TestLdapAuth(t *testing.T) {
	ctx := ctxFor(t)
	key := unique(t)
	if _, err := server.PutKV(ctx, "secret", key, map[string]any{"a": "b"}); err != nil {
		t.Fatal(err)
	}
	canary := "ldap pw canary " + key // spaces are part of a password
	mount := ldapBackend(t, "alice", canary)
	f := newFixture(t, secret("ldap", map[string]string{"password": canary, "wrong": "wrong-" + canary, "empty": ""}))
	// Surrounding spaces in the username are dropped, as ESO does.
	c := f.mustClient(ldapSpec(mount, " alice ", ref("ldap", "password")))
	for range 3 {
		if _, err := c.Get(ctx, providers.Ref{Key: key}); err != nil {
			t.Fatal(err)
		}
	}
	if n := count(t, "auth/"+mount+"/login/alice"); n != 1 {
		t.Errorf("%d logins for 3 reads, want 1", n)
	}

	_, err := f.newClient(ldapSpec(mount, "alice", ref("ldap", "wrong")))
	wantError(t, err, providers.Forbidden, `Vault refused to log in as user "alice" of the ldap auth method at auth/`+mount+`; check that the auth method is enabled at auth/`+mount+`, that the user exists and that the store's secretRef holds its password`, canary)
	_, err = f.newClient(ldapSpec(mount, "alice", ref("ldap", "empty")))
	wantError(t, err, providers.Invalid, `spec.provider.vault.auth.ldap.secretRef: Secret ldap key "empty" is empty`)

	dialed := f.dialer.count()
	elsewhere := secret("ldap", map[string]string{"password": canary})
	elsewhere.Namespace = "elsewhere"
	g := newFixture(t, elsewhere)
	other := ref("ldap", "password")
	other.Namespace = ptr("elsewhere")
	_, err = g.newClient(ldapSpec(mount, "alice", other))
	wantError(t, err, providers.Forbidden, "may only use credentials of its own namespace", canary)
	for _, name := range []string{"../sys/x", "..", "a\nb"} {
		_, err = g.newClient(ldapSpec(mount, name, ref("ldap", "password")))
		wantError(t, err, providers.Invalid, "spec.provider.vault.auth.ldap.username is not an LDAP user name Veil can log in as")
	}
	if g.dialer.count() != 0 {
		t.Errorf("dialed %v before refusing", g.dialer.dialed)
	}
	// A ClusterSecretStore must name the Secret's namespace.
	spec := ldapSpec(mount, "alice", ref("ldap", "password"))
	cluster := &providers.Store{Kind: configv1alpha1.ClusterSecretStoreKind, Name: "vault", Generation: 1,
		Spec: &configv1alpha1.SecretStoreSpec{Provider: configv1alpha1.SecretStoreProvider{Vault: &spec}}}
	_, err = provider{clock: g.clock}.NewClient(ctx, cluster, credsFor(cluster, elsewhere), providers.Env{DialContext: g.dialer.DialContext})
	wantError(t, err, providers.Invalid, "must set namespace, because a ClusterSecretStore has none of its own", canary)
	spec = ldapSpec(mount, "alice", other)
	cc, err := provider{clock: g.clock}.NewClient(ctx, cluster, credsFor(cluster, elsewhere), providers.Env{DialContext: g.dialer.DialContext})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close(context.Background()) })
	if _, err := cc.Get(ctx, providers.Ref{Key: key}); err != nil {
		t.Fatal(err)
	}
	dialedByCluster := g.dialer.count()
	_, err = g.newClient(ldapSpec("../sys", "alice", ref("ldap", "password")))
	wantError(t, err, providers.Invalid, `spec.provider.vault.auth.ldap.path: it has a "." or ".." segment`)
	if g.dialer.count() != dialedByCluster || f.dialer.count() != dialed {
		t.Errorf("dialed %v before refusing", g.dialer.dialed)
	}
}
