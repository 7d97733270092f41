package aws

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestDecryptExportedKeyRefusals(t *testing.T) {
	for name, in := range map[string]string{
		"not PEM":         "veilcanary",
		"other PEM":       "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
		"bad encrypted":   "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMAA=\n-----END ENCRYPTED PRIVATE KEY-----\n",
		"bad unencrypted": "-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n",
	} {
		if _, err := decryptExportedKey([]byte(in), []byte("passphrase")); err != errExportedKey {
			t.Errorf("%s: %v, want errExportedKey", name, err)
		}
	}
}

type bodyClient struct{ body string }

func (b bodyClient) Do(*http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: 200, ContentLength: -1, Body: io.NopCloser(strings.NewReader(b.body))}, nil
}

func TestLimitedHTTPClient(t *testing.T) {
	for _, tc := range []struct {
		body string
		ok   bool
	}{{"12345678", true}, {"123456789", false}} {
		resp, err := (&limitedHTTPClient{next: bodyClient{tc.body}, max: 8}).Do(&http.Request{})
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		if tc.ok != (err == nil) || (tc.ok && !bytes.Equal(got, []byte(tc.body))) {
			t.Errorf("body of %d bytes through a limit of 8: %q, %v", len(tc.body), got, err)
		}
	}
}
