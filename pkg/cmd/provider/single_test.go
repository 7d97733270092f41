package provider

import (
	"context"
	"io"
	"testing"
)

// A single-provider binary serves its kind without --provider: this test
// binary links no provider, so the kind it defaults to is the one refused.
func TestSingleCommandServesItsKind(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, `--provider "vault" is not built into this veil-provider; it has []`},
		{[]string{"--provider=aws"}, `--provider "aws" is not built into this veil-provider; it has []`},
	} {
		cmd := NewSingleCommand(context.Background(), "veil-provider-vault", "vault")
		if cmd.Name() != "veil-provider-vault" {
			t.Errorf("the command is called %q", cmd.Name())
		}
		cmd.SetArgs(append([]string{"--listen=127.0.0.1:0", "--tls-cert-file=c", "--tls-private-key-file=k",
			"--client-ca-file=ca", "--allowed-client=spiffe://x", "--config=f"}, tc.args...))
		cmd.SetOut(io.Discard)
		cmd.SetErr(io.Discard)
		if err := cmd.Execute(); err == nil || err.Error() != tc.want {
			t.Errorf("%v: error %v, want %s", tc.args, err, tc.want)
		}
	}
}
