package harness

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// Moto is a moto server, the AWS emulator (Apache-2.0, from the machine
// image) the AWS provider is tested against. One plain-HTTP loopback port
// serves every AWS API; its state lives in memory and is lost when it
// stops.
//
// Its log records requests and may hold values, so it must be kept out of
// a cluster's logs/ directory, which FindCanary searches for leaks.
type Moto struct {
	// URL is the endpoint of every service.
	URL string
	// Region is the region tests and demo stores use.
	Region string

	port   int
	logDir string
	proc   *Process
}

// Keys moto accepts while it does not check signatures; setup calls sign
// with them.
const (
	MotoAccessKeyID     = "testing"
	MotoSecretAccessKey = "testing"
)

// StartMoto starts moto on a free loopback port, logging to logDir.
func StartMoto(ctx context.Context, logDir string) (*Moto, error) {
	if out, err := exec.CommandContext(ctx, "python3", "-c", "import moto.server").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("moto is not installed: the AWS tests and demo need python3 with moto 5.x (pip install 'moto[server]==5.2.1'): %v: %s", err, bytes.TrimSpace(out))
	}
	if err := os.MkdirAll(logDir, 0o700); err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	m := &Moto{URL: "http://" + hostPort(port), Region: "us-east-1", port: port, logDir: logDir}
	return m, m.start(ctx)
}

func (m *Moto) start(ctx context.Context) error {
	var err error
	m.proc, err = startProcess("moto", m.logDir, "python3", []string{"-m", "moto.server", "-H", "127.0.0.1", "-p", strconv.Itoa(m.port)}, nil)
	if err != nil {
		return err
	}
	return m.proc.waitFor(ctx, time.Minute, func(ctx context.Context) error {
		return httpOK(ctx, http.DefaultClient, m.URL+"/moto-api/")
	})
}

// Stop stops moto; what it held is gone.
func (m *Moto) Stop() {
	if m != nil {
		m.proc.Stop()
	}
}

// Restart starts a stopped moto again on the same port, empty.
func (m *Moto) Restart(ctx context.Context) error {
	m.Stop()
	return m.start(ctx)
}

// LogFile is moto's log.
func (m *Moto) LogFile() string { return m.proc.LogFile }

// Reset empties every service, as a fresh start would.
func (m *Moto) Reset(ctx context.Context) error {
	return m.motoAPI(ctx, "/moto-api/reset", "")
}

// RequireSignatures makes moto check, from now on, every request's SigV4
// signature against the access keys made through IAM, and the IAM
// policies of their users and roles (its INITIAL_NO_AUTH_ACTION_COUNT).
func (m *Moto) RequireSignatures(ctx context.Context) error {
	return m.motoAPI(ctx, "/moto-api/reset-auth", "0")
}

// AcceptAnyCredentials undoes RequireSignatures.
func (m *Moto) AcceptAnyCredentials(ctx context.Context) error {
	return m.motoAPI(ctx, "/moto-api/reset-auth", "inf")
}

func (m *Moto) motoAPI(ctx context.Context, path, body string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.URL+path, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "text/plain")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("moto %s: %s: %s", path, resp.Status, b)
	}
	return nil
}

// Config is an SDK configuration for moto signing with the given keys,
// for tests to put and inspect data.
func (m *Moto) Config(accessKeyID, secretAccessKey string) aws.Config {
	return aws.Config{
		Region:       m.Region,
		Credentials:  credentials.NewStaticCredentialsProvider(accessKeyID, secretAccessKey, ""),
		BaseEndpoint: aws.String(m.URL),
	}
}

// AccessKey is an IAM access key.
type AccessKey struct{ ID, Secret string }

// CreateUser makes an IAM user with an inline policy (a JSON policy
// document) and an access key.
func (m *Moto) CreateUser(ctx context.Context, name, policy string) (AccessKey, error) {
	if _, err := m.IAM(ctx, "CreateUser", url.Values{"UserName": {name}}); err != nil {
		return AccessKey{}, err
	}
	if _, err := m.IAM(ctx, "PutUserPolicy", url.Values{"UserName": {name}, "PolicyName": {name}, "PolicyDocument": {policy}}); err != nil {
		return AccessKey{}, err
	}
	body, err := m.IAM(ctx, "CreateAccessKey", url.Values{"UserName": {name}})
	if err != nil {
		return AccessKey{}, err
	}
	var out struct {
		ID     string `xml:"CreateAccessKeyResult>AccessKey>AccessKeyId"`
		Secret string `xml:"CreateAccessKeyResult>AccessKey>SecretAccessKey"`
	}
	if err := xml.Unmarshal(body, &out); err != nil || out.ID == "" {
		return AccessKey{}, fmt.Errorf("moto CreateAccessKey: unexpected response (%v)", err)
	}
	return AccessKey{ID: out.ID, Secret: out.Secret}, nil
}

// CreateRole makes an IAM role that the trust policy lets assume, with an
// inline policy, and returns its ARN.
func (m *Moto) CreateRole(ctx context.Context, name, trust, policy string) (string, error) {
	body, err := m.IAM(ctx, "CreateRole", url.Values{"RoleName": {name}, "AssumeRolePolicyDocument": {trust}})
	if err != nil {
		return "", err
	}
	var out struct {
		ARN string `xml:"CreateRoleResult>Role>Arn"`
	}
	if err := xml.Unmarshal(body, &out); err != nil || out.ARN == "" {
		return "", fmt.Errorf("moto CreateRole: unexpected response (%v)", err)
	}
	if _, err := m.IAM(ctx, "PutRolePolicy", url.Values{"RoleName": {name}, "PolicyName": {name}, "PolicyDocument": {policy}}); err != nil {
		return "", err
	}
	return out.ARN, nil
}

// IAM calls an action of IAM's query API, signed with the setup keys, and
// returns the XML response. (The SDK's IAM client is not a dependency of
// Veil; these few calls do not justify one.)
func (m *Moto) IAM(ctx context.Context, action string, params url.Values) ([]byte, error) {
	params.Set("Action", action)
	params.Set("Version", "2010-05-08")
	body := params.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.URL+"/", strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	sum := sha256.Sum256([]byte(body))
	creds := aws.Credentials{AccessKeyID: MotoAccessKeyID, SecretAccessKey: MotoSecretAccessKey}
	if err := v4.NewSigner().SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), "iam", m.Region, time.Now()); err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("moto IAM %s: %s: %s", action, resp.Status, out)
	}
	return out, nil
}
