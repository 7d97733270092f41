package provider

import (
	"context"
	"io"
	"strings"
	"testing"
)

func TestValidateSaysEveryMissingFlag(t *testing.T) {
	err := (&Options{}).Validate()
	if err == nil {
		t.Fatal("empty options validated")
	}
	for _, says := range []string{"--provider is required", "--tls-cert-file is required", "--tls-private-key-file is required",
		"--client-ca-file is required", "--allowed-client is required", "--config is required", "--listen is required"} {
		if !strings.Contains(err.Error(), says) {
			t.Errorf("%q does not say %q", err, says)
		}
	}
}

// The flags reach the options; this test binary links no provider, so
// the one named is refused, by name.
func TestCommandFlags(t *testing.T) {
	cmd := NewCommand(context.Background())
	cmd.SetArgs([]string{"--provider=vault", "--listen=127.0.0.1:0", "--tls-cert-file=c", "--tls-private-key-file=k",
		"--client-ca-file=ca", "--allowed-client=spiffe://x", "--config=f"})
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	err := cmd.Execute()
	if err == nil || err.Error() != `--provider "vault" is not built into this veil-provider; it has []` {
		t.Fatalf("error %v, want only the unknown provider", err)
	}
}
