package aws

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/providers"
)

// assumeRoleCall is one AssumeRole request as the fake STS received it.
type assumeRoleCall struct {
	// signedBy is the access key ID of the request's signature: the
	// credentials of the hop before.
	signedBy          string
	roleARN           string
	externalID        string
	sessionName       string
	tags              []string // "key=value", in order
	transitiveTagKeys []string
}

// recordingSTS is an HTTP server that plays STS (AssumeRole) and Secrets
// Manager (GetSecretValue), records every AssumeRole, and hands out
// credentials named after the role, with a canary in their secret parts.
type recordingSTS struct {
	*httptest.Server
	deny string // a role ARN to refuse

	mu      sync.Mutex
	assumed []assumeRoleCall
	readBy  []string // access key IDs that signed GetSecretValue
}

const chainCanary = "CANARY-chain-secret-0b7f"

var credentialPattern = regexp.MustCompile(`Credential=([^/]+)/`)

func newRecordingSTS(t *testing.T) *recordingSTS {
	f := &recordingSTS{}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

// keyOf is the access key ID the fake hands out for a role.
func keyOf(arn string) string {
	return "ASIA" + strings.ToUpper(regexp.MustCompile(`[^a-zA-Z0-9]`).ReplaceAllString(arn[strings.LastIndex(arn, "/")+1:], ""))
}

func (f *recordingSTS) serve(w http.ResponseWriter, r *http.Request) {
	signedBy := ""
	if m := credentialPattern.FindStringSubmatch(r.Header.Get("Authorization")); m != nil {
		signedBy = m[1]
	}
	if strings.HasSuffix(r.Header.Get("X-Amz-Target"), "GetSecretValue") {
		io.Copy(io.Discard, r.Body)
		f.mu.Lock()
		f.readBy = append(f.readBy, signedBy)
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		fmt.Fprint(w, `{"ARN":"arn:aws:secretsmanager:us-east-1:123456789012:secret:db-abc","Name":"db","SecretString":"value","VersionId":"v1"}`)
		return
	}
	if err := r.ParseForm(); err != nil || r.Form.Get("Action") != "AssumeRole" {
		http.Error(w, "unexpected request", http.StatusBadRequest)
		return
	}
	c := assumeRoleCall{signedBy: signedBy, roleARN: r.Form.Get("RoleArn"), externalID: r.Form.Get("ExternalId"), sessionName: r.Form.Get("RoleSessionName")}
	for i := 1; r.Form.Has(fmt.Sprintf("Tags.member.%d.Key", i)); i++ {
		c.tags = append(c.tags, r.Form.Get(fmt.Sprintf("Tags.member.%d.Key", i))+"="+r.Form.Get(fmt.Sprintf("Tags.member.%d.Value", i)))
	}
	for i := 1; r.Form.Has(fmt.Sprintf("TransitiveTagKeys.member.%d", i)); i++ {
		c.transitiveTagKeys = append(c.transitiveTagKeys, r.Form.Get(fmt.Sprintf("TransitiveTagKeys.member.%d", i)))
	}
	f.mu.Lock()
	f.assumed = append(f.assumed, c)
	f.mu.Unlock()
	w.Header().Set("Content-Type", "text/xml")
	if c.roleARN == f.deny {
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprintf(w, `<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>not authorized to perform sts:AssumeRole on %s</Message></Error><RequestId>req-1</RequestId></ErrorResponse>`, c.roleARN)
		return
	}
	fmt.Fprintf(w, `<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult><Credentials><AccessKeyId>%s</AccessKeyId><SecretAccessKey>%s-%s</SecretAccessKey><SessionToken>%s-token</SessionToken><Expiration>%s</Expiration></Credentials><AssumedRoleUser><Arn>%s/s</Arn><AssumedRoleId>AROA:s</AssumedRoleId></AssumedRoleUser></AssumeRoleResult><ResponseMetadata><RequestId>req-2</RequestId></ResponseMetadata></AssumeRoleResponse>`,
		keyOf(c.roleARN), chainCanary, keyOf(c.roleARN), chainCanary, time.Now().Add(time.Hour).UTC().Format(time.RFC3339), c.roleARN)
}

func (f *recordingSTS) calls() ([]assumeRoleCall, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]assumeRoleCall(nil), f.assumed...), append([]string(nil), f.readBy...)
}

const (
	hop1  = "arn:aws:iam::111111111111:role/hop-one"
	hop2  = "arn:aws:iam::222222222222:role/team/hop-two"
	final = "arn:aws:iam::333333333333:role/final"
)

func chainClient(t *testing.T, fake *recordingSTS, edit ...func(*configv1alpha1.AWSProvider)) providers.Client {
	t.Helper()
	spec := configv1alpha1.AWSProvider{Service: configv1alpha1.AWSServiceSecretsManager, Region: "us-east-1",
		Endpoint: fake.URL, STSEndpoint: fake.URL, Auth: keys,
		AdditionalRoles: []string{hop1, hop2}, Role: final, ExternalID: "ext-team-a",
		SessionTags:       []configv1alpha1.AWSTag{{Key: "team", Value: "a"}, {Key: "env", Value: "prod"}},
		TransitiveTagKeys: []string{"team"}}
	for _, e := range edit {
		e(&spec)
	}
	creds := &fakeCredentials{secrets: map[string]string{"aws/id": "AKIDBASE", "aws/secret": chainCanary + "-base"}}
	c, err := provider{}.NewClient(context.Background(), store(configv1alpha1.SecretStoreKind, spec), creds, plainEnv())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// TestRoleChainRequests proves the order of a chain, as ESO's: each
// additional role assumed with the credentials of the one before, by a
// plain AssumeRole, then role with the external ID, the session tags and
// the transitive tag keys; the final credentials reused across reads.
func TestRoleChainRequests(t *testing.T) {
	fake := newRecordingSTS(t)
	c := chainClient(t, fake)
	ctx := ctxFor(t)
	for range 3 {
		if v, err := c.Get(ctx, providers.Ref{Key: "db"}); err != nil || string(v.Data) != "value" {
			t.Fatalf("read through the chain: %v", err)
		}
	}
	assumed, readBy := fake.calls()
	want := []assumeRoleCall{
		{signedBy: "AKIDBASE", roleARN: hop1, sessionName: "veil.team-a.aws"},
		{signedBy: keyOf(hop1), roleARN: hop2, sessionName: "veil.team-a.aws"},
		{signedBy: keyOf(hop2), roleARN: final, sessionName: "veil.team-a.aws", externalID: "ext-team-a",
			tags:              []string{TagStoreKind + "=SecretStore", TagStoreNamespace + "=team-a", TagStoreName + "=aws", "team=a", "env=prod"},
			transitiveTagKeys: []string{"team"}},
	}
	if got, exp := fmt.Sprintf("%+v", assumed), fmt.Sprintf("%+v", want); got != exp {
		t.Errorf("AssumeRole requests\n got %s\nwant %s", got, exp)
	}
	if strings.Join(readBy, " ") != strings.Join([]string{keyOf(final), keyOf(final), keyOf(final)}, " ") {
		t.Errorf("GetSecretValue signed by %v, want the final role's key %s three times", readBy, keyOf(final))
	}
}

// TestRoleChainRefused proves that a hop STS refuses is named in the
// error, which carries no credentials of any hop.
func TestRoleChainRefused(t *testing.T) {
	fake := newRecordingSTS(t)
	fake.deny = hop2
	c := chainClient(t, fake)
	_, err := c.Get(ctxFor(t), providers.Ref{Key: "db"})
	wantReason(t, err, providers.Forbidden, "STS refused AssumeRole of role "+hop2+" in the chain",
		"role "+final+" assumed with role "+hop2+" assumed with role "+hop1+" assumed with the access key in Secret team-a/aws")
	if strings.Contains(err.Error(), chainCanary) {
		t.Errorf("the error carries credentials: %v", err)
	}
	assumed, readBy := fake.calls()
	if len(assumed) == 0 || assumed[len(assumed)-1].roleARN != hop2 || len(readBy) != 0 {
		t.Errorf("calls %+v, reads %v: the chain must stop at the refused hop, and nothing be read", assumed, readBy)
	}
	for _, a := range assumed {
		if a.roleARN == final {
			t.Errorf("role %s assumed although the hop before it was refused", final)
		}
	}
}

// TestRoleChainWithoutRole: as in ESO, without role the store acts as the
// last of additionalRoles, each assumed by a plain AssumeRole.
func TestRoleChainWithoutRole(t *testing.T) {
	fake := newRecordingSTS(t)
	c := chainClient(t, fake, func(s *configv1alpha1.AWSProvider) {
		s.Role, s.ExternalID, s.SessionTags, s.TransitiveTagKeys = "", "", nil, nil
	})
	if _, err := c.Get(ctxFor(t), providers.Ref{Key: "db"}); err != nil {
		t.Fatal(err)
	}
	assumed, readBy := fake.calls()
	want := []assumeRoleCall{
		{signedBy: "AKIDBASE", roleARN: hop1, sessionName: "veil.team-a.aws"},
		{signedBy: keyOf(hop1), roleARN: hop2, sessionName: "veil.team-a.aws"},
	}
	if got, exp := fmt.Sprintf("%+v", assumed), fmt.Sprintf("%+v", want); got != exp {
		t.Errorf("AssumeRole requests\n got %s\nwant %s", got, exp)
	}
	if len(readBy) != 1 || readBy[0] != keyOf(hop2) {
		t.Errorf("GetSecretValue signed by %v, want the last additional role's key %s", readBy, keyOf(hop2))
	}
}
