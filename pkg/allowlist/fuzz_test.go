package allowlist

import (
	"net/netip"
	"strings"
	"testing"
)

// FuzzParse: any --allowed-provider-endpoints value either is refused with
// a message naming the flag or parses into a list that answers every host
// without panicking, whose String parses back to the same list, and that
// never lets a metadata address through unless an IP entry names it.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"vault.example.com,*.corp.example,10.0.0.0/8", "127.0.0.1,localhost", "*.", "::1/128,FE80::1", " , ,x", "*.a:b", "169.254.169.254"} {
		f.Add(s, "vault.example.com")
	}
	f.Add("*.example.com", "169.254.169.254")
	f.Fuzz(func(t *testing.T, entries, host string) {
		l, err := Parse(strings.Split(entries, ","))
		if err != nil {
			if !strings.Contains(err.Error(), "--allowed-provider-endpoints") {
				t.Fatalf("error %q does not name the flag", err)
			}
			return
		}
		if !l.Empty() {
			again, err := Parse(strings.Split(l.String(), ","))
			if err != nil || again.String() != l.String() {
				t.Fatalf("String %q does not parse back: %v", l.String(), err)
			}
		}
		l.Allows(host)
		for _, trust := range []Trust{Cluster, Namespaced} {
			err := l.Check(trust, host)
			a, perr := netip.ParseAddr(normalize(host))
			if perr == nil && a.Unmap().IsLinkLocalUnicast() && err == nil && !l.listsAddr(a.Unmap()) {
				t.Fatalf("link-local %s passes %q without an IP entry naming it", host, l.String())
			}
		}
	})
}
