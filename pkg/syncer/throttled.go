package syncer

import (
	"net/http"
	"strings"

	"github.com/veil-dev/veil/pkg/apis/externalsecrets"
)

// noWaitOnThrottle keeps client-go from sleeping on veil-apiserver's 429s.
//
// veil-apiserver answers a namespace over its share of a provider with 429
// and Retry-After (pkg/throttle). client-go honours Retry-After by sleeping
// and retrying, up to ten times, inside the request: a worker would then be
// held for a minute or more on one namespace's ExternalSecret while every
// other namespace waited for a worker. Without the header, client-go
// returns the 429 at once; the delay is still in the Status body
// (details.retryAfterSeconds), and the syncer requeues the ExternalSecret
// with backoff, freeing the worker. kube-apiserver's own 429s for other
// groups keep their header.
func noWaitOnThrottle(rt http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		resp, err := rt.RoundTrip(req)
		if err == nil && resp.StatusCode == http.StatusTooManyRequests && strings.HasPrefix(req.URL.Path, veilAPIPath) {
			resp.Header.Del("Retry-After")
		}
		return resp, err
	})
}

const veilAPIPath = "/apis/" + externalsecrets.GroupName + "/"

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }
