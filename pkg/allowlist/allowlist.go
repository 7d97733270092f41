// Package allowlist decides which provider endpoints veil-apiserver may
// connect to (--allowed-provider-endpoints), so a store cannot point Veil at
// a server of an attacker's choosing (ESO threat model, Threat-02-S), nor at
// the cloud's metadata service or into the cluster (a confused deputy):
// even with no list, a SecretStore cannot reach loopback, private,
// link-local or metadata addresses, and a ClusterSecretStore cannot reach
// link-local or metadata ones, unless the list names them.
package allowlist

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// List is a parsed --allowed-provider-endpoints. The zero List allows any
// host; the address rules (see Check) apply whatever the list.
type List struct {
	hosts    map[string]bool
	suffixes []string // ".example.com" for "*.example.com"
	prefixes []netip.Prefix
	raw      []string
	// resolver replaces the system's in tests.
	resolver netResolver
}

type netResolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Parse reads entries: host names ("vault.example.com"), wildcard suffixes
// ("*.example.com", which matches names under example.com but not
// example.com itself), IP addresses and CIDRs ("10.0.0.0/8").
func Parse(entries []string) (*List, error) {
	l := &List{hosts: map[string]bool{}}
	for _, e := range entries {
		e = strings.ToLower(strings.TrimSpace(e))
		switch {
		case e == "":
			continue
		case strings.Contains(e, "/"):
			p, err := netip.ParsePrefix(e)
			if err != nil {
				return nil, fmt.Errorf("--allowed-provider-endpoints: %q is not a valid CIDR", e)
			}
			l.prefixes = append(l.prefixes, p.Masked())
		case strings.HasPrefix(e, "*."):
			if strings.ContainsAny(e[2:], "*:") || len(e) == 2 {
				return nil, fmt.Errorf("--allowed-provider-endpoints: %q: a wildcard must be \"*.\" followed by a domain", e)
			}
			l.suffixes = append(l.suffixes, e[1:])
		default:
			if a, err := netip.ParseAddr(e); err == nil {
				l.prefixes = append(l.prefixes, netip.PrefixFrom(a, a.BitLen()))
			} else if strings.ContainsAny(e, "*:/ ") {
				return nil, fmt.Errorf("--allowed-provider-endpoints: %q is neither a host name, a *.suffix nor a CIDR", e)
			} else {
				l.hosts[strings.TrimSuffix(e, ".")] = true
			}
		}
		l.raw = append(l.raw, e)
	}
	return l, nil
}

// Empty says whether the list has no entries, so any host passes it.
func (l *List) Empty() bool { return l == nil || len(l.raw) == 0 }

// String lists the entries, for messages.
func (l *List) String() string {
	if l.Empty() {
		return "not set"
	}
	return strings.Join(l.raw, ",")
}

// Allows says whether host (a name or an IP literal, without port) is in
// the list. Names are matched as written, never resolved: CIDR entries
// match IP literals only, so DNS cannot widen the list. The address rules
// are Check's and Dialer's.
func (l *List) Allows(host string) bool {
	if l.Empty() {
		return true
	}
	host = normalize(host)
	if a, err := netip.ParseAddr(host); err == nil {
		return l.listsAddr(a)
	}
	if l.hosts[host] {
		return true
	}
	for _, s := range l.suffixes {
		if strings.HasSuffix(host, s) {
			return true
		}
	}
	return false
}

// Trust is how far the author of a store is trusted with the addresses it
// makes veil-apiserver connect to.
type Trust int

const (
	// Namespaced is a SecretStore: whoever administers a namespace can
	// write one, so it may not reach into the cluster or the node.
	Namespaced Trust = iota
	// Cluster is a ClusterSecretStore, written by a cluster administrator:
	// it may reach loopback and private addresses, never link-local or
	// metadata ones.
	Cluster
)

// Check refuses, before any connection, an endpoint that a store of this
// trust may not use: a host outside a non-empty list, or an IP literal in a
// refused range. A host name is judged by its addresses when it is dialed.
func (l *List) Check(trust Trust, host string) error {
	host = normalize(host)
	if !l.Allows(host) {
		return &NotAllowedError{Host: host, List: l}
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return l.checkAddr(trust, host, a)
	}
	return nil
}

// checkAddr applies the address rules to one address host stands for:
// link-local, metadata and other special addresses need an IP or CIDR
// entry that contains them; loopback and private addresses need that entry,
// or a ClusterSecretStore, or a non-empty list the host was found in (the
// administrator named it); any other address is allowed.
func (l *List) checkAddr(trust Trust, host string, a netip.Addr) error {
	class := classify(a)
	switch {
	case class == public || l.listsAddr(a):
		return nil
	case class == internal && (trust == Cluster || !l.Empty()):
		return nil
	}
	return &NotAllowedError{Host: host, List: l, Addr: a.Unmap(), Class: class}
}

// listsAddr says whether an IP or CIDR entry contains a.
func (l *List) listsAddr(a netip.Addr) bool {
	if l == nil {
		return false
	}
	a = a.Unmap()
	for _, p := range l.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Dialer wraps a dial function so that every connection of a store's
// client is checked: the host against the list, then each address it
// resolves to against the address rules, and the connection is made to the
// address that was checked. Clients dial through it, so a redirect, a second
// endpoint or a name that resolves somewhere else later (DNS rebinding)
// cannot get around the check made before a store is used. A nil dial is
// a plain net.Dialer's.
func (l *List) Dialer(trust Trust, dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		host = normalize(host)
		if !l.Allows(host) {
			return nil, &NotAllowedError{Host: host, List: l}
		}
		addrs, err := l.lookup(ctx, host)
		if err != nil {
			return nil, err
		}
		// Every address must pass, not just the one that answers: a name
		// that resolves to a public and a metadata address is refused.
		for _, a := range addrs {
			if err := l.checkAddr(trust, host, a); err != nil {
				return nil, err
			}
		}
		var errs []error
		for _, a := range addrs {
			conn, err := dial(ctx, network, net.JoinHostPort(a.Unmap().String(), port))
			if err == nil {
				return conn, nil
			}
			errs = append(errs, err)
		}
		return nil, errors.Join(errs...)
	}
}

func (l *List) lookup(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a}, nil
	}
	var r netResolver = net.DefaultResolver
	if l != nil && l.resolver != nil {
		r = l.resolver
	}
	addrs, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, err
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("%s resolves to no address", host)
	}
	return addrs, nil
}

func normalize(host string) string {
	return strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
}

// NotAllowedError is returned for an endpoint outside the list, or one that
// resolves to an address its store may not reach.
type NotAllowedError struct {
	Host string
	List *List
	// Addr and Class are set when an address of Host was refused.
	Addr  netip.Addr
	Class AddrClass
}

func (e *NotAllowedError) Error() string {
	if !e.Addr.IsValid() {
		return fmt.Sprintf("endpoint %q is not allowed by veil-apiserver's --allowed-provider-endpoints (%s); ask the cluster administrator to add it", e.Host, e.List)
	}
	if e.Class == internal {
		return fmt.Sprintf("endpoint %q is %s, a %s address, which a SecretStore may reach only when veil-apiserver's --allowed-provider-endpoints (%s) lists the host or the address; ask the cluster administrator",
			e.Host, e.Addr, e.Class, e.List)
	}
	return fmt.Sprintf("endpoint %q is %s, a %s address, which no store may reach unless veil-apiserver's --allowed-provider-endpoints (%s) lists the address as an IP or CIDR; ask the cluster administrator",
		e.Host, e.Addr, e.Class, e.List)
}
