package allowlist

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
)

func TestAllows(t *testing.T) {
	l, err := Parse([]string{"vault.example.com", "*.amazonaws.com", "10.0.0.0/8", "192.0.2.7", " ", "Vault.Internal."})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		host string
		want bool
	}{
		{"vault.example.com", true},
		{"VAULT.example.com.", true},
		{"evil-vault.example.com", false},
		{"vault.example.com.evil.org", false},
		{"secretsmanager.us-east-1.amazonaws.com", true},
		{"a.b.amazonaws.com", true},
		{"amazonaws.com", false},
		{"amazonaws.com.evil.org", false},
		{"10.1.2.3", true},
		{"[::ffff:10.1.2.3]", true},
		{"11.1.2.3", false},
		{"192.0.2.7", true},
		{"192.0.2.8", false},
		{"vault.internal", true},
		// Names are never resolved: a CIDR entry does not admit a name that
		// happens to resolve into it.
		{"localhost", false},
	}
	for _, c := range cases {
		if got := l.Allows(c.host); got != c.want {
			t.Errorf("Allows(%q) = %v, want %v", c.host, got, c.want)
		}
	}
}

func TestEmptyAllowsAny(t *testing.T) {
	for _, entries := range [][]string{nil, {""}, {"  "}} {
		l, err := Parse(entries)
		if err != nil {
			t.Fatal(err)
		}
		if !l.Empty() || !l.Allows("anything.example") || l.String() != "any endpoint" {
			t.Errorf("Parse(%q) should allow any endpoint", entries)
		}
	}
	var nilList *List
	if !nilList.Allows("x") {
		t.Error("a nil list should allow any endpoint")
	}
}

func TestParseRejects(t *testing.T) {
	for _, e := range []string{"10.0.0.0/33", "*.", "*.*.example.com", "vault.example.com:8200", "a b", "*", "http://vault"} {
		if _, err := Parse([]string{e}); err == nil || !strings.Contains(err.Error(), "--allowed-provider-endpoints") {
			t.Errorf("Parse(%q) = %v, want an error naming the flag", e, err)
		}
	}
}

func TestDialerRefusesBeforeDialing(t *testing.T) {
	l, err := Parse([]string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	dialed := []string{}
	dial := l.Dialer(func(_ context.Context, _, addr string) (net.Conn, error) {
		dialed = append(dialed, addr)
		return nil, errors.New("not really dialing")
	})
	_, err = dial(context.Background(), "tcp", "evil.example:443")
	var na *NotAllowedError
	if !errors.As(err, &na) || na.Host != "evil.example" || !strings.Contains(err.Error(), "--allowed-provider-endpoints (127.0.0.1)") {
		t.Errorf("dial evil.example: %v, want NotAllowedError naming the flag", err)
	}
	if _, err := dial(context.Background(), "tcp", "127.0.0.1:8200"); err == nil || errors.As(err, &na) {
		t.Errorf("dial 127.0.0.1: %v, want the underlying dialer's error", err)
	}
	if len(dialed) != 1 || dialed[0] != "127.0.0.1:8200" {
		t.Errorf("dialed %v, want only 127.0.0.1:8200", dialed)
	}
}
