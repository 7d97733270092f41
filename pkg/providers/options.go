package providers

import (
	"context"
	"errors"
	"maps"
	"slices"
	"time"

	"github.com/spf13/pflag"
)

// Options are a provider's own flags, offered by every process that
// serves the provider (veil-apiserver in process, veil-provider out of
// process), so a binary has the flags of the providers it links and no
// others.
type Options interface {
	AddFlags(fs *pflag.FlagSet)
	// Validate says what is wrong with the flags as set.
	Validate() error
	// Start starts what the flags ask for, until ctx ends.
	Start(ctx context.Context) error
	// Asked says whether the flags ask for anything.
	Asked() bool
}

var options = map[string]Options{}

// RegisterOptions adds the options of provider name; provider packages
// call it from init.
func RegisterOptions(name string, o Options) {
	mu.Lock()
	defer mu.Unlock()
	options[name] = o
}

func registeredOptions(only []string) []Options {
	mu.RLock()
	defer mu.RUnlock()
	var out []Options
	for _, n := range slices.Sorted(maps.Keys(options)) {
		if len(only) == 0 || slices.Contains(only, n) {
			out = append(out, options[n])
		}
	}
	return out
}

// AddOptionFlags adds the flags of the providers named (all, when none
// is).
func AddOptionFlags(fs *pflag.FlagSet, only ...string) {
	for _, o := range registeredOptions(only) {
		o.AddFlags(fs)
	}
}

// ValidateOptions validates the options of the providers named (all,
// when none is).
func ValidateOptions(only ...string) error {
	var errs []error
	for _, o := range registeredOptions(only) {
		errs = append(errs, o.Validate())
	}
	return errors.Join(errs...)
}

// StartOptions starts the options of the providers named (all, when none
// is).
func StartOptions(ctx context.Context, only ...string) error {
	for _, o := range registeredOptions(only) {
		if err := o.Start(ctx); err != nil {
			return err
		}
	}
	return nil
}

// OptionsAsked says whether the flags of any provider ask for something.
func OptionsAsked() bool {
	for _, o := range registeredOptions(nil) {
		if o.Asked() {
			return true
		}
	}
	return false
}

// Leader is implemented by Options whose work belongs to the change
// detection leader alone (a Vault audit feed: only the leader's watches
// use it, so connections to another replica are turned away and Vault
// reconnects, through a Service, to the leader).
type Leader interface {
	// Follow says this process elects a leader and does not lead yet.
	Follow()
	// Lead is called when this process starts leading; ctx ends when it
	// stops. It returns at once.
	Lead(ctx context.Context)
	// LeaderPorts are the TCP ports of that work, by name, for the
	// leader's EndpointSlice.
	LeaderPorts() []NamedPort
}

// NamedPort is a port of a Leader's work.
type NamedPort struct {
	Name string
	Port int32
}

func leaders() []Leader {
	var out []Leader
	for _, o := range registeredOptions(nil) {
		if l, ok := o.(Leader); ok {
			out = append(out, l)
		}
	}
	return out
}

// FollowOptions tells every Leader this process elects a leader.
func FollowOptions() {
	for _, l := range leaders() {
		l.Follow()
	}
}

// LeadOptions tells every Leader this process leads until ctx ends.
func LeadOptions(ctx context.Context) {
	for _, l := range leaders() {
		l.Lead(ctx)
	}
}

// LeaderPorts are the ports of every Leader's work.
func LeaderPorts() []NamedPort {
	var out []NamedPort
	for _, l := range leaders() {
		out = append(out, l.LeaderPorts()...)
	}
	return out
}

// Admit admits one provider call within a store's budget; done ends it.
type Admit func() (done func(), err error)

type admitKey struct{}

// WithAdmit gives a ChangeWatcher the budget its own provider calls go
// through: a watch is opened as one call, and what it asks the provider
// afterwards (a version after a change) is admitted one call at a time.
func WithAdmit(ctx context.Context, admit Admit) context.Context {
	return context.WithValue(ctx, admitKey{}, admit)
}

// AdmitFrom is the Admit ctx carries, or nil.
func AdmitFrom(ctx context.Context) Admit {
	a, _ := ctx.Value(admitKey{}).(Admit)
	return a
}

// AdmitCall admits one call within the budget ctx carries (none: always).
func AdmitCall(ctx context.Context) (done func(), err error) {
	if a := AdmitFrom(ctx); a != nil {
		return a()
	}
	return func() {}, nil
}

// Waiting is admit waiting while it answers Throttled (for the retry time
// it gives, from 50 ms to 1 s), until ctx ends.
func Waiting(ctx context.Context, admit Admit) Admit {
	return func() (func(), error) {
		for {
			done, err := admit()
			var pe *Error
			if err == nil || !errors.As(err, &pe) || pe.Reason != Throttled {
				return done, err
			}
			wait := min(max(pe.RetryAfter, 50*time.Millisecond), time.Second)
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(wait):
			}
		}
	}
}
