// Package allowlist decides which provider endpoints veil-apiserver may
// connect to (--allowed-provider-endpoints), so a store cannot point Veil at
// a server of an attacker's choosing (ESO threat model, Threat-02-S).
package allowlist

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// List is a parsed --allowed-provider-endpoints. The zero List allows any
// endpoint.
type List struct {
	hosts    map[string]bool
	suffixes []string // ".example.com" for "*.example.com"
	prefixes []netip.Prefix
	raw      []string
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

// Empty says whether the list allows everything.
func (l *List) Empty() bool { return l == nil || len(l.raw) == 0 }

// String lists the entries, for messages.
func (l *List) String() string {
	if l.Empty() {
		return "any endpoint"
	}
	return strings.Join(l.raw, ",")
}

// Allows says whether host (a name or an IP literal, without port) may be
// connected to. Names are matched as written, never resolved: CIDR entries
// match IP literals only, so DNS cannot widen the list.
func (l *List) Allows(host string) bool {
	if l.Empty() {
		return true
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if a, err := netip.ParseAddr(host); err == nil {
		a = a.Unmap()
		for _, p := range l.prefixes {
			if p.Contains(a) {
				return true
			}
		}
		return false
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

// Dialer wraps a dial function so that it refuses addresses the list does
// not allow. Clients dial through it, so a redirect or a second endpoint
// cannot get around the check made before a store is used.
func (l *List) Dialer(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			host = addr
		}
		if !l.Allows(host) {
			return nil, &NotAllowedError{Host: host, List: l}
		}
		return dial(ctx, network, addr)
	}
}

// NotAllowedError is returned for an endpoint outside the list.
type NotAllowedError struct {
	Host string
	List *List
}

func (e *NotAllowedError) Error() string {
	return fmt.Sprintf("endpoint %q is not allowed by veil-apiserver's --allowed-provider-endpoints (%s); ask the cluster administrator to add it", e.Host, e.List)
}
