// Package logcap keeps client-go's request logging from printing what
// Veil's binaries send and receive — Secrets, TokenRequest responses,
// TokenReviews, values — whatever -v and --vmodule say.
package logcap

import (
	"flag"
	"fmt"
	"strconv"
	"strings"

	"k8s.io/klog/v2"
)

// clientFiles are the files, named as --vmodule names them, whose verbose
// logging carries what a client sends or receives: client-go's
// rest/request.go logs request and response bodies from V(8), and
// transport/round_trippers.go logs request headers from V(7), response
// headers from V(8) and curl commands from V(9). Both decide with klog's
// verbosity at the call site, which -v or a --vmodule pattern raises.
var clientFiles = []string{"request", "round_trippers"}

// MaxClientVerbosity is the most those files may log at: method, URL,
// status and timing.
const MaxClientVerbosity = 6

// Apply caps the verbosity of clientFiles at MaxClientVerbosity, keeping
// every other file's. klog checks -v before --vmodule, so a -v above the
// cap is lowered to it and carried over to every other file by a final
// "*" pattern; the caps come first in --vmodule, where the first matching
// pattern wins. Call it once, after flags are parsed and before any
// client is made.
func Apply() error {
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	v, err := strconv.Atoi(fs.Lookup("v").Value.String())
	if err != nil {
		return fmt.Errorf("reading -v: %w", err)
	}
	spec := make([]string, 0, len(clientFiles)+2)
	for _, f := range clientFiles {
		spec = append(spec, fmt.Sprintf("%s=%d", f, MaxClientVerbosity))
	}
	if user := fs.Lookup("vmodule").Value.String(); user != "" {
		spec = append(spec, user)
	}
	if v > MaxClientVerbosity {
		spec = append(spec, fmt.Sprintf("*=%d", v))
		if err := fs.Set("v", strconv.Itoa(MaxClientVerbosity)); err != nil {
			return err
		}
	}
	return fs.Set("vmodule", strings.Join(spec, ","))
}
