package allowlist

import "net/netip"

// AddrClass is what an address is, for the rules of Check and Dialer.
type AddrClass int

const (
	public AddrClass = iota
	// internal: loopback and private addresses — the node, the pod
	// network, in-cluster Services.
	internal
	// special: link-local (where clouds serve instance metadata and
	// credentials), the known metadata addresses outside it, unspecified,
	// multicast, broadcast and reserved addresses.
	special
)

func (c AddrClass) String() string {
	switch c {
	case internal:
		return "loopback or private"
	case special:
		return "link-local, metadata or reserved"
	}
	return "public"
}

var (
	specialRanges = prefixes(
		"0.0.0.0/8",          // "this network": 0.0.0.0 reaches the node itself
		"169.254.0.0/16",     // link-local: AWS, GCP, Azure and OpenStack metadata, ECS task credentials
		"100.100.100.200/32", // Alibaba Cloud metadata
		"168.63.129.16/32",   // Azure WireServer
		"192.0.0.0/24",       // IETF protocol assignments
		"224.0.0.0/4",        // multicast
		"240.0.0.0/4",        // reserved, and broadcast
		"::/128",             // unspecified
		"fe80::/10",          // link-local
		"fd00:ec2::254/128",  // AWS metadata over IPv6
		"ff00::/8",           // multicast
	)
	internalRanges = prefixes(
		"127.0.0.0/8",    // loopback
		"10.0.0.0/8",     // private
		"172.16.0.0/12",  // private
		"192.168.0.0/16", // private
		"100.64.0.0/10",  // shared address space (carrier-grade NAT, some pod networks)
		"198.18.0.0/15",  // benchmarking, used by some clusters
		"::1/128",        // loopback
		"fc00::/7",       // unique local
	)
	// nat64 carries an IPv4 address in its last four bytes; a NAT64
	// gateway connects to that address.
	nat64 = prefixes("64:ff9b::/96", "64:ff9b:1::/48")
)

func prefixes(cidrs ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(cidrs))
	for i, c := range cidrs {
		out[i] = netip.MustParsePrefix(c)
	}
	return out
}

// classify judges an IPv4 address written as IPv6 (mapped, or NAT64) by
// the IPv4 address it carries. Special ranges are looked at first: some
// lie inside internal ones (fd00:ec2::254 in fc00::/7).
func classify(a netip.Addr) AddrClass {
	a = a.Unmap()
	for _, p := range nat64 {
		if p.Contains(a) {
			b := a.As16()
			return classify(netip.AddrFrom4([4]byte(b[12:])))
		}
	}
	for _, p := range specialRanges {
		if p.Contains(a) {
			return special
		}
	}
	for _, p := range internalRanges {
		if p.Contains(a) {
			return internal
		}
	}
	return public
}
