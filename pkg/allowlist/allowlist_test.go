package allowlist

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
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
		if !l.Empty() || !l.Allows("anything.example") || l.String() != "not set" {
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
	dial := l.Dialer(Namespaced, func(_ context.Context, _, addr string) (net.Conn, error) {
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

func TestAddressRules(t *testing.T) {
	const (
		allowed = "allowed"
		refused = "refused"
	)
	cases := []struct {
		list           []string
		host           string
		namespaced     string
		clusterStore   string
		wantClassInMsg string
	}{
		// No list: public only for SecretStores, loopback and private too
		// for ClusterSecretStores, link-local and metadata for neither.
		{nil, "203.0.113.9", allowed, allowed, ""},
		{nil, "2001:db8::1", allowed, allowed, ""},
		{nil, "127.0.0.1", refused, allowed, "loopback or private"},
		{nil, "::1", refused, allowed, "loopback or private"},
		{nil, "10.96.0.1", refused, allowed, "loopback or private"},
		{nil, "172.20.1.1", refused, allowed, "loopback or private"},
		{nil, "192.168.1.1", refused, allowed, "loopback or private"},
		{nil, "100.64.0.1", refused, allowed, "loopback or private"},
		{nil, "fd12::1", refused, allowed, "loopback or private"},
		{nil, "169.254.169.254", refused, refused, "link-local, metadata or reserved"},
		{nil, "169.254.170.2", refused, refused, "link-local, metadata or reserved"},
		{nil, "fe80::1", refused, refused, "link-local, metadata or reserved"},
		{nil, "fd00:ec2::254", refused, refused, "link-local, metadata or reserved"},
		{nil, "100.100.100.200", refused, refused, "link-local, metadata or reserved"},
		{nil, "168.63.129.16", refused, refused, "link-local, metadata or reserved"},
		{nil, "0.0.0.0", refused, refused, "link-local, metadata or reserved"},
		{nil, "::", refused, refused, "link-local, metadata or reserved"},
		{nil, "255.255.255.255", refused, refused, "link-local, metadata or reserved"},
		{nil, "224.0.0.1", refused, refused, "link-local, metadata or reserved"},
		// IPv4 written as IPv6 is judged by the IPv4 address.
		{nil, "::ffff:169.254.169.254", refused, refused, "link-local, metadata or reserved"},
		{nil, "[::ffff:127.0.0.1]", refused, allowed, "loopback or private"},
		{nil, "64:ff9b::a9fe:a9fe", refused, refused, "link-local, metadata or reserved"},
		{nil, "64:ff9b::cb00:7109", allowed, allowed, ""},
		// An IP or CIDR entry allows what it contains, for either kind.
		{[]string{"127.0.0.1"}, "127.0.0.1", allowed, allowed, ""},
		{[]string{"169.254.169.254"}, "169.254.169.254", allowed, allowed, ""},
		{[]string{"fd00:ec2::/64"}, "fd00:ec2::254", allowed, allowed, ""},
		// A list without that entry refuses it, whatever else it allows.
		{[]string{"10.0.0.0/8"}, "169.254.169.254", refused, refused, ""},
	}
	for _, c := range cases {
		l, err := Parse(c.list)
		if err != nil {
			t.Fatal(err)
		}
		for trust, want := range map[Trust]string{Namespaced: c.namespaced, Cluster: c.clusterStore} {
			err := l.Check(trust, c.host)
			var na *NotAllowedError
			switch {
			case want == allowed && err != nil:
				t.Errorf("list %v, trust %d: Check(%q) = %v, want allowed", c.list, trust, c.host, err)
			case want == refused && !errors.As(err, &na):
				t.Errorf("list %v, trust %d: Check(%q) = %v, want NotAllowedError", c.list, trust, c.host, err)
			case want == refused && !strings.Contains(err.Error(), c.wantClassInMsg):
				t.Errorf("list %v, trust %d: Check(%q) = %v, want the message to say %q", c.list, trust, c.host, err, c.wantClassInMsg)
			}
		}
	}
}

type fakeResolver map[string][]string

func (f fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, a := range f[host] {
		out = append(out, netip.MustParseAddr(a))
	}
	if len(out) == 0 {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return out, nil
}

// The address rules apply to what a name resolves to when it is dialed,
// and the connection goes to the address that was checked, so a name that
// passed before the store was used cannot be pointed at the metadata
// service afterwards.
func TestDialerChecksResolvedAddresses(t *testing.T) {
	dns := fakeResolver{
		"vault.example":     {"203.0.113.9"},
		"rebind.example":    {"169.254.169.254"},
		"mixed.example":     {"203.0.113.9", "169.254.169.254"},
		"svc.example":       {"10.96.0.10"},
		"localhost":         {"127.0.0.1"},
		"nat64.example":     {"64:ff9b::a9fe:a9fe"},
		"imds.example":      {"169.254.169.254"},
		"dualstack.example": {"2001:db8::9", "203.0.113.9"},
	}
	cases := []struct {
		list  []string
		trust Trust
		host  string
		want  []string // addresses dialed; nil when refused before dialing
	}{
		{nil, Namespaced, "vault.example", []string{"203.0.113.9:443"}},
		{nil, Namespaced, "dualstack.example", []string{"[2001:db8::9]:443", "203.0.113.9:443"}},
		{nil, Namespaced, "rebind.example", nil},
		{nil, Cluster, "rebind.example", nil},
		{nil, Namespaced, "mixed.example", nil},
		{nil, Namespaced, "nat64.example", nil},
		{nil, Namespaced, "svc.example", nil},
		{nil, Cluster, "svc.example", []string{"10.96.0.10:443"}},
		{nil, Namespaced, "localhost", nil},
		// A name the administrator listed may be loopback or private, as
		// for an in-cluster Vault; metadata addresses need an IP entry.
		{[]string{"localhost"}, Namespaced, "localhost", []string{"127.0.0.1:443"}},
		{[]string{"*.example"}, Namespaced, "svc.example", []string{"10.96.0.10:443"}},
		{[]string{"*.example"}, Cluster, "rebind.example", nil},
		{[]string{"*.example", "169.254.169.254"}, Namespaced, "imds.example", []string{"169.254.169.254:443"}},
		{nil, Namespaced, "missing.example", nil},
	}
	for _, c := range cases {
		l, err := Parse(c.list)
		if err != nil {
			t.Fatal(err)
		}
		l.resolver = dns
		var dialed []string
		dial := l.Dialer(c.trust, func(_ context.Context, _, addr string) (net.Conn, error) {
			dialed = append(dialed, addr)
			return nil, errors.New("not really dialing")
		})
		_, err = dial(context.Background(), "tcp", net.JoinHostPort(c.host, "443"))
		if !slices.Equal(dialed, c.want) {
			t.Errorf("list %v, trust %d, %s: dialed %v, want %v (%v)", c.list, c.trust, c.host, dialed, c.want, err)
		}
		var na *NotAllowedError
		if c.want == nil && c.host != "missing.example" && !errors.As(err, &na) {
			t.Errorf("list %v, trust %d, %s: %v, want NotAllowedError", c.list, c.trust, c.host, err)
		}
	}
}
