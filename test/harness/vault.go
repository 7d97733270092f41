package harness

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Vault is a real Vault server, built by `make tools` (hack/install-vault.sh) (Vault is
// BUSL-licensed: a test fixture, never shipped). It is not a dev server: it
// keeps its data in integrated (raft) storage and is initialised and
// unsealed like a real one, so a restart keeps its data and the tokens it
// issued. It is Vault's `minimal` build; the Kubernetes auth method runs as
// an external plugin registered in its catalog.
type Vault struct {
	// Dir holds Vault's configuration, data, log and audit log. It is never
	// under a cluster's logs/, which FindCanary searches: Vault holds values.
	Dir string
	// HTTPURL is a plaintext listener, for the harness and for tests of
	// plaintext endpoints; HTTPSURL a TLS listener whose certificate CA
	// signed, for 127.0.0.1 and localhost.
	HTTPURL, HTTPSURL string
	CA                *CA
	// AuditLog is the file audit device's log: one JSON object per request
	// and per response, with values HMAC'd.
	AuditLog string
	// Root is a client with the root token, over HTTPURL.
	Root *vaultapi.Client
	// Binary is the vault executable, which is also Vault's CLI.
	Binary string

	config    string
	unsealKey string
	process   *Process
	progress  func(format string, args ...any)
}

// VaultOptions tune StartVault.
type VaultOptions struct {
	// Dir is Vault's working directory; it is created.
	Dir string
	// Progress receives one line per step; nil discards them.
	Progress io.Writer
	// HTTPPort is the plaintext listener's port; 0 picks a free one.
	HTTPPort int
}

// StartVault starts a Vault server on free loopback ports, initialises and
// unseals it, mounts a KV v2 engine at secret/ (as a dev server would) and
// enables a file audit device.
func StartVault(ctx context.Context, opts VaultOptions) (*Vault, error) {
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	v := &Vault{Dir: opts.Dir, progress: func(format string, args ...any) {
		fmt.Fprintf(opts.Progress, "[%s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
	}}
	if err := os.MkdirAll(filepath.Join(v.Dir, "data"), 0o700); err != nil {
		return nil, err
	}
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	if v.Binary, err = CachedBinary(ctx, root, "vault"); err != nil {
		return nil, err
	}

	if v.CA, err = NewCA(v.Dir, "vault-ca"); err != nil {
		return nil, err
	}
	serving, err := v.CA.Issue(v.Dir, "vault-server", "vault", nil, []string{"127.0.0.1", "localhost"})
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	if opts.HTTPPort != 0 {
		ports[0] = opts.HTTPPort
	}
	v.HTTPURL, v.HTTPSURL = "http://"+hostPort(ports[0]), "https://"+hostPort(ports[1])
	v.AuditLog = filepath.Join(v.Dir, "audit.log")
	v.config = filepath.Join(v.Dir, "vault.hcl")
	config := fmt.Sprintf(`storage "raft" {
  path    = %q
  node_id = "veil-test"
}
plugin_directory = %q
listener "tcp" {
  address     = %q
  tls_disable = true
}
listener "tcp" {
  address       = %q
  tls_cert_file = %q
  tls_key_file  = %q
}
cluster_addr  = "https://%s"
api_addr      = %q
disable_mlock = true
ui            = false
log_level     = "warn"
`, filepath.Join(v.Dir, "data"), filepath.Join(filepath.Dir(v.Binary), "plugins"), hostPort(ports[0]), hostPort(ports[1]), serving.CertFile, serving.KeyFile, hostPort(ports[2]), v.HTTPURL)
	if err := os.WriteFile(v.config, []byte(config), 0o600); err != nil {
		return nil, err
	}

	if v.Root, err = vaultapi.NewClient(&vaultapi.Config{Address: v.HTTPURL, Timeout: 30 * time.Second}); err != nil {
		return nil, err
	}
	if err := v.start(ctx); err != nil {
		v.Stop()
		return nil, err
	}
	init, err := v.Root.Sys().InitWithContext(ctx, &vaultapi.InitRequest{SecretShares: 1, SecretThreshold: 1})
	if err != nil {
		v.Stop()
		return nil, fmt.Errorf("initialising Vault: %w", err)
	}
	v.unsealKey = init.KeysB64[0]
	v.Root.SetToken(init.RootToken)
	if err := v.unseal(ctx); err != nil {
		v.Stop()
		return nil, err
	}
	if err := v.registerPlugins(ctx); err != nil {
		v.Stop()
		return nil, err
	}
	if err := v.EnableKV(ctx, "secret", 2); err != nil {
		v.Stop()
		return nil, err
	}
	if err := v.Root.Sys().EnableAuditWithOptionsWithContext(ctx, "file", &vaultapi.EnableAuditOptions{
		Type: "file", Options: map[string]string{"file_path": v.AuditLog},
	}); err != nil {
		v.Stop()
		return nil, fmt.Errorf("enabling Vault's audit device: %w", err)
	}
	return v, nil
}

// registerPlugins adds the auth methods the minimal build leaves out
// (Kubernetes, AWS, LDAP) to Vault's plugin catalog, under their usual
// names, so `auth enable kubernetes` works as on a full build. Vault runs a
// catalogued plugin only if its SHA-256 matches, like any
// operator-registered plugin.
func (v *Vault) registerPlugins(ctx context.Context) error {
	for _, p := range []struct{ name, command string }{
		{"kubernetes", "vault-plugin-auth-kubernetes"},
		{"aws", "vault-plugin-auth-aws"},
		{"ldap", "vault-plugin-auth-ldap"},
	} {
		bin, err := os.ReadFile(filepath.Join(filepath.Dir(v.Binary), "plugins", p.command))
		if err != nil {
			return fmt.Errorf("reading Vault's %s auth plugin (built with vault by 'make tools'): %w", p.name, err)
		}
		sum := sha256.Sum256(bin)
		if err := v.Root.Sys().RegisterPluginWithContext(ctx, &vaultapi.RegisterPluginInput{
			Name: p.name, Type: vaultapi.PluginTypeCredential, Command: p.command, SHA256: hex.EncodeToString(sum[:]),
		}); err != nil {
			return fmt.Errorf("registering Vault's %s auth plugin: %w", p.name, err)
		}
	}
	return nil
}

// StartVault starts a Vault server whose files are under the cluster's
// directory, in vault/<name>, outside logs/.
func (c *Cluster) StartVault(ctx context.Context, name string) (*Vault, error) {
	return c.StartVaultOn(ctx, name, 0)
}

// StartVaultOn is StartVault with its plaintext listener on port (0: a
// free one), for a server veil-apiserver was told of before it started.
func (c *Cluster) StartVaultOn(ctx context.Context, name string, port int) (*Vault, error) {
	return StartVault(ctx, VaultOptions{Dir: filepath.Join(c.Dir, "vault", name), Progress: c.opts.Progress, HTTPPort: port})
}

func (v *Vault) start(ctx context.Context) error {
	v.progress("starting vault on %s and %s", v.HTTPURL, v.HTTPSURL)
	var err error
	// Vault's own log goes to Dir, not to the cluster's logs/.
	if v.process, err = startProcess("vault", v.Dir, v.Binary, []string{"server", "-config=" + v.config}, []string{
		// The server must not pick up a developer's Vault settings.
		"VAULT_ADDR=", "VAULT_TOKEN=", "VAULT_NAMESPACE=",
	}); err != nil {
		return err
	}
	return v.process.waitFor(ctx, 30*time.Second, func(ctx context.Context) error {
		_, err := v.Root.Sys().SealStatusWithContext(ctx)
		return err
	})
}

func (v *Vault) unseal(ctx context.Context) error {
	if _, err := v.Root.Sys().UnsealWithContext(ctx, v.unsealKey); err != nil {
		return fmt.Errorf("unsealing Vault: %w", err)
	}
	return v.process.waitFor(ctx, 30*time.Second, func(ctx context.Context) error {
		h, err := v.Root.Sys().HealthWithContext(ctx)
		switch {
		case err != nil:
			return err
		case h.Sealed || h.Standby:
			return errors.New("Vault is not active yet")
		}
		return nil
	})
}

// Stop stops the server; its files stay.
func (v *Vault) Stop() {
	if v != nil {
		v.process.Stop()
	}
}

// Restart stops the server and starts and unseals it again, on the same
// ports, with the same data: tokens it issued before still work.
func (v *Vault) Restart(ctx context.Context) error {
	v.Stop()
	if err := v.start(ctx); err != nil {
		return err
	}
	return v.unseal(ctx)
}

// Write writes data to a Vault API path as root.
func (v *Vault) Write(ctx context.Context, path string, data map[string]any) (*vaultapi.Secret, error) {
	s, err := v.Root.Logical().WriteWithContext(ctx, path, data)
	if err != nil {
		return nil, fmt.Errorf("writing Vault path %s: %w", path, err)
	}
	return s, nil
}

// EnableKV mounts a KV engine of the given version (1 or 2) at path.
func (v *Vault) EnableKV(ctx context.Context, path string, version int) error {
	if err := v.Root.Sys().MountWithContext(ctx, path, &vaultapi.MountInput{
		Type: "kv", Options: map[string]string{"version": fmt.Sprint(version)},
	}); err != nil {
		return fmt.Errorf("mounting KV v%d at %s: %w", version, path, err)
	}
	if version == 1 {
		return nil
	}
	// A new KV v2 mount refuses writes until it has set itself up.
	return v.process.waitFor(ctx, 30*time.Second, func(ctx context.Context) error {
		_, err := v.Root.Logical().ReadWithContext(ctx, path+"/config")
		return err
	})
}

// PutKV writes a new version of a KV v2 key and returns its number.
func (v *Vault) PutKV(ctx context.Context, mount, key string, data map[string]any) (int, error) {
	s, err := v.Root.KVv2(mount).Put(ctx, key, data)
	if err != nil {
		return 0, fmt.Errorf("writing %s/%s: %w", mount, key, err)
	}
	return s.VersionMetadata.Version, nil
}

// PutKVv1 writes a key of a KV v1 mount.
func (v *Vault) PutKVv1(ctx context.Context, mount, key string, data map[string]any) error {
	if err := v.Root.KVv1(mount).Put(ctx, key, data); err != nil {
		return fmt.Errorf("writing %s/%s: %w", mount, key, err)
	}
	return nil
}

// TagKV sets the custom_metadata of a KV v2 key.
func (v *Vault) TagKV(ctx context.Context, mount, key string, tags map[string]string) error {
	custom := map[string]any{}
	for k, val := range tags {
		custom[k] = val
	}
	_, err := v.Write(ctx, mount+"/metadata/"+key, map[string]any{"custom_metadata": custom})
	return err
}

// Policy writes an ACL policy.
func (v *Vault) Policy(ctx context.Context, name, hcl string) error {
	if err := v.Root.Sys().PutPolicyWithContext(ctx, name, hcl); err != nil {
		return fmt.Errorf("writing policy %s: %w", name, err)
	}
	return nil
}

// Token creates a token with the given policies and TTL.
func (v *Vault) Token(ctx context.Context, ttl time.Duration, policies ...string) (string, error) {
	s, err := v.Root.Auth().Token().CreateWithContext(ctx, &vaultapi.TokenCreateRequest{Policies: policies, TTL: ttl.String(), NoParent: true})
	if err != nil {
		return "", fmt.Errorf("creating a Vault token: %w", err)
	}
	return s.Auth.ClientToken, nil
}

// EnableAuth enables an auth method of the given type at path.
func (v *Vault) EnableAuth(ctx context.Context, path, method string) error {
	if err := v.Root.Sys().EnableAuthWithOptionsWithContext(ctx, path, &vaultapi.EnableAuthOptions{Type: method}); err != nil {
		return fmt.Errorf("enabling auth method %s at %s: %w", method, path, err)
	}
	return nil
}

// AppRole enables AppRole at auth/<mount> if needed, creates a role with
// the given settings (token_policies, token_ttl, ...) and returns its role
// id and a new secret id.
func (v *Vault) AppRole(ctx context.Context, mount, role string, settings map[string]any) (roleID, secretID string, err error) {
	auths, err := v.Root.Sys().ListAuthWithContext(ctx)
	if err != nil {
		return "", "", err
	}
	if _, ok := auths[mount+"/"]; !ok {
		if err := v.EnableAuth(ctx, mount, "approle"); err != nil {
			return "", "", err
		}
	}
	rolePath := "auth/" + mount + "/role/" + role
	if _, err := v.Write(ctx, rolePath, settings); err != nil {
		return "", "", err
	}
	s, err := v.Root.Logical().ReadWithContext(ctx, rolePath+"/role-id")
	if err != nil || s == nil {
		return "", "", fmt.Errorf("reading the role id of %s: %v", rolePath, err)
	}
	roleID, _ = s.Data["role_id"].(string)
	s, err = v.Write(ctx, rolePath+"/secret-id", nil)
	if err != nil {
		return "", "", err
	}
	secretID, _ = s.Data["secret_id"].(string)
	return roleID, secretID, nil
}

// TokenReviewerNamespace and TokenReviewerServiceAccount are the
// ServiceAccount whose token Vault's Kubernetes auth method uses to review
// the tokens it is given; it is bound to system:auth-delegator.
const (
	TokenReviewerNamespace      = "vault-auth"
	TokenReviewerServiceAccount = "vault-token-reviewer"
)

// ConfigureKubernetesAuth enables the Kubernetes auth method at
// auth/<mount> and points it at the cluster's kube-apiserver: Vault checks
// each login's ServiceAccount token with a TokenReview, made with a token of
// a ServiceAccount allowed to create TokenReviews.
func (v *Vault) ConfigureKubernetesAuth(ctx context.Context, c *Cluster, mount string) error {
	kube := c.KubeClient
	// Several Vault servers may share the reviewer.
	created := func(_ any, err error) error {
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
		return err
	}
	if err := created(kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: TokenReviewerNamespace}}, metav1.CreateOptions{})); err != nil {
		return err
	}
	if err := created(kube.CoreV1().ServiceAccounts(TokenReviewerNamespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: TokenReviewerServiceAccount}}, metav1.CreateOptions{})); err != nil {
		return err
	}
	if err := created(kube.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "vault-token-reviewer"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "system:auth-delegator"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: TokenReviewerServiceAccount, Namespace: TokenReviewerNamespace}},
	}, metav1.CreateOptions{})); err != nil {
		return err
	}
	exp := int64(24 * 3600)
	tr, err := kube.CoreV1().ServiceAccounts(TokenReviewerNamespace).CreateToken(ctx, TokenReviewerServiceAccount,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("requesting a token for the token reviewer: %w", err)
	}
	if err := v.EnableAuth(ctx, mount, "kubernetes"); err != nil {
		return err
	}
	_, err = v.Write(ctx, "auth/"+mount+"/config", map[string]any{
		"kubernetes_host":    c.APIServerURL,
		"kubernetes_ca_cert": string(c.ClusterCA.CertPEM),
		"token_reviewer_jwt": tr.Status.Token,
	})
	return err
}

// AuditEntry is one line of the audit log, as far as tests look at it.
type AuditEntry struct {
	Type    string `json:"type"`
	Error   string `json:"error"`
	Request struct {
		Path      string `json:"path"`
		Operation string `json:"operation"`
	} `json:"request"`
	Auth struct {
		ClientToken string `json:"client_token"`
	} `json:"auth"`
}

// Audit reads the audit log.
func (v *Vault) Audit() ([]AuditEntry, error) {
	b, err := os.ReadFile(v.AuditLog)
	if err != nil {
		return nil, err
	}
	// Vault may be writing the last line as it is read: only lines it has
	// finished, with their newline, are entries yet.
	b = b[:bytes.LastIndexByte(b, '\n')+1]
	var out []AuditEntry
	for line := range bytes.Lines(b) {
		var e AuditEntry
		if err := json.Unmarshal(line, &e); err != nil {
			return nil, fmt.Errorf("reading %s: %w", v.AuditLog, err)
		}
		out = append(out, e)
	}
	return out, nil
}

// Responses counts the audited responses to requests on path, and of
// those the ones that failed.
func (v *Vault) Responses(path string) (all, failed int, err error) {
	entries, err := v.Audit()
	if err != nil {
		return 0, 0, err
	}
	for _, e := range entries {
		if e.Type == "response" && e.Request.Path == path {
			all++
			if e.Error != "" {
				failed++
			}
		}
	}
	return all, failed, nil
}

// Logins counts the successful logins at auth/<mount>.
func (v *Vault) Logins(mount string) (int, error) {
	all, failed, err := v.Responses("auth/" + mount + "/login")
	return all - failed, err
}
