// Package conformance is what every provider must do, written once: one
// table of behaviours (get, versions, properties and extract through
// pkg/resolve, find by name and tags, push, delete, error reasons, outage
// and recovery, and a canary that no error or log may show), run as
// subtests against a real server through one Fixture.
//
// Each provider package runs it from its own tests, against the servers its
// TestMain already starts:
//
//	func TestConformance(t *testing.T) { conformance.Run(t, &myFixture{...}) }
//
// The suite builds its clients the way veil-apiserver does, from the store
// spec the fixture gives, through the registered provider and the real
// credential reader; reads through pkg/resolve go through Stores, Clients
// and the resolver themselves. It imports no provider package: a provider
// served out of process passes it the same way, by registering a Provider.
//
// A provider that cannot do something declares it in Info.Unsupported,
// with the reason. The suite then checks, where it can, that the provider
// refuses it rather than guessing (a version asked of a store without
// versions is an error, not the latest value), and logs every capability
// it did not exercise: a skip is never a silent pass.
package conformance

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/klog/v2"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/credentials"
	"github.com/veil-dev/veil/pkg/providers"
)

// Namespace is where the store under test and the objects its credentials
// refer to live; StoreName is its name.
const (
	Namespace = "conformance"
	StoreName = "under-test"
)

// Capability is something a provider may be unable to do.
type Capability string

const (
	// Versions: Get reads an older value with Ref.Version.
	Versions Capability = "versions"
	// RawValues: a value that is not a JSON object is stored and read
	// back byte for byte. Without it, values are JSON objects of fields,
	// which the provider may encode again (compared as JSON).
	RawValues Capability = "raw values"
	// Tags: Find selects by tags (the fixture is a Tagger).
	Tags Capability = "tags"
	// FindBound: seeding MaxFindResults+1 keys is cheap enough that the
	// suite checks a find over them is refused.
	FindBound Capability = "find bound"
	// BatchGet: the client is a providers.BatchGetter.
	BatchGet Capability = "batch get"
	// Push: the client pushes whole values, for an owner.
	Push Capability = "push"
	// PushProperty: the client pushes one property of a JSON object.
	PushProperty Capability = "push property"
	// Delete: the client deletes what its owner pushed.
	Delete Capability = "delete"
	// Forbidden: the fixture builds a store whose credentials may not
	// read (it is a Denier).
	Forbidden Capability = "forbidden"
	// Outage: the fixture stops the server and starts it again (it is an
	// Outager).
	Outage Capability = "outage"
	// ChangeDetection: the client is a providers.VersionLister, which
	// tells a new value from the old by versions that carry neither.
	ChangeDetection Capability = "change detection"
	// ChangeStream: the client is a providers.ChangeWatcher, which follows
	// keys by a stream of changes the provider detects itself.
	ChangeStream Capability = "change stream"
)

var allCapabilities = []Capability{Versions, RawValues, Tags, FindBound, BatchGet, Push, PushProperty, Delete, Forbidden, Outage, ChangeDetection, ChangeStream}

// Info describes the store under test.
type Info struct {
	// KeyPrefix starts every remote key the suite uses: "/" where
	// hierarchical names must start with one (Parameter Store).
	KeyPrefix string
	// MissingVersion is a version, well formed for the provider, that no
	// value has. Needed with Versions.
	MissingVersion string
	// KeepsData: values written before an outage are there after it.
	KeepsData bool
	// Unsupported names what the provider (or the fixture) cannot do, each
	// with why.
	Unsupported map[Capability]string
}

// Store is a store as a user writes it: its spec, and the objects in
// Namespace (credential Secrets, CA ConfigMaps) it refers to.
type Store struct {
	Spec    configv1alpha1.SecretStoreSpec
	Objects []runtime.Object
}

// Fixture is one store under test on a real server.
type Fixture interface {
	Info() Info
	// Store returns the store under test as it is now. The suite builds
	// its clients after seeding what they read, so a provider whose values
	// are its spec (fake) serves what was seeded.
	Store(t *testing.T) Store
	// Seed writes value at key as an operator would, outside Veil:
	// creating the key, or writing a new version of it. value is a JSON
	// object of fields unless the provider has RawValues. It returns the
	// version the write made, "" where the provider has none.
	Seed(t *testing.T, key string, value []byte) (version string)
}

// Tagger tags a seeded key, as an operator would. Needed with Tags.
type Tagger interface {
	Tag(t *testing.T, key string, tags map[string]string)
}

// Denier builds a store on the same server whose credentials may not read
// key. It returns the credentials too, which no error may show. What it
// changes on the server it undoes in t.Cleanup. Needed with Forbidden.
type Denier interface {
	Denied(t *testing.T, key string) (store Store, credentials []string)
}

// Outager stops the server; restore starts it again at the same address.
// The suite calls restore, also when the test fails. Needed with Outage.
type Outager interface {
	Outage(t *testing.T) (restore func())
}

// LogSource returns what the server logged, for the canary search (a
// Vault audit log, whose values are HMAC'd). Optional.
type LogSource interface {
	Logs(t *testing.T) []byte
}

// Run runs every behaviour against f, one subtest each.
func Run(t *testing.T, f Fixture) {
	s := newSuite(t, f)
	logs := captureKlog()
	defer logs.restore()
	defer s.report(t)
	for _, b := range behaviours {
		var missing []Capability
		for _, c := range b.needs {
			if _, no := s.info.Unsupported[c]; no {
				missing = append(missing, c)
			}
		}
		switch {
		case len(missing) == 0:
			t.Run(b.name, func(t *testing.T) { b.run(t, s) })
		case b.refused != nil:
			// What the provider cannot do it must refuse, not guess.
			t.Run(b.name+"/refused", func(t *testing.T) { b.refused(t, s) })
			s.note("%s: not exercised (%s declared unsupported); checked that it is refused", b.name, capList(missing))
		default:
			s.note("%s: not exercised (%s declared unsupported)", b.name, capList(missing))
			t.Run(b.name, func(t *testing.T) { t.Skipf("not exercised: %s declared unsupported", capList(missing)) })
		}
	}
	t.Run("canary absent", func(t *testing.T) { s.canaryAbsent(t, logs) })
}

func capList(cs []Capability) string {
	s := make([]string, len(cs))
	for i, c := range cs {
		s[i] = string(c)
	}
	return strings.Join(s, ", ")
}

type suite struct {
	f    Fixture
	info Info
	// run makes the keys and tag values of one Run its own.
	run string

	mu sync.Mutex
	// canaries are in every value the suite writes; secrets are
	// credentials. No error or log may show either.
	canaries []string
	secrets  []string
	// errors counts the errors checked, canaryReads the values read back
	// that carried a canary: the canary behaviour must have seen both.
	errors      int
	canaryReads int
	notes       []string
}

func newSuite(t *testing.T, f Fixture) *suite {
	s := &suite{f: f, info: f.Info(), run: randomHex(4)}
	for c, why := range s.info.Unsupported {
		known := false
		for _, k := range allCapabilities {
			known = known || k == c
		}
		if !known || strings.TrimSpace(why) == "" {
			t.Fatalf("Info.Unsupported: %q must be a known capability with a reason, got reason %q", c, why)
		}
	}
	// What is not declared unsupported must be provided, not guessed.
	needs := []struct {
		c  Capability
		ok bool
		is string
	}{
		{Tags, isA[Tagger](f), "Tagger"},
		{Forbidden, isA[Denier](f), "Denier"},
		{Outage, isA[Outager](f), "Outager"},
	}
	for _, n := range needs {
		if _, no := s.info.Unsupported[n.c]; !no && !n.ok {
			t.Fatalf("the fixture is no %s: implement it, or declare %q unsupported in Info.Unsupported with the reason", n.is, n.c)
		}
	}
	if _, no := s.info.Unsupported[Versions]; !no && s.info.MissingVersion == "" {
		t.Fatal("Info.MissingVersion is empty: a provider with versions names a version no value has")
	}
	return s
}

func isA[T any](f Fixture) bool { _, ok := f.(T); return ok }

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func (s *suite) supports(c Capability) bool {
	_, no := s.info.Unsupported[c]
	return !no
}

func (s *suite) note(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.notes = append(s.notes, fmt.Sprintf(format, args...))
}

// report logs what was not exercised, and why.
func (s *suite) report(t *testing.T) {
	caps := make([]string, 0, len(s.info.Unsupported))
	for c := range s.info.Unsupported {
		caps = append(caps, string(c))
	}
	sort.Strings(caps)
	for _, c := range caps {
		t.Logf("capability %q not exercised: declared unsupported: %s", c, s.info.Unsupported[Capability(c)])
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.notes {
		t.Log(n)
	}
}

// key is a remote key of this run.
func (s *suite) key(name string) string {
	return s.info.KeyPrefix + "veil-conformance-" + s.run + "/" + name
}

// canary returns a new canary, which the caller writes somewhere.
func (s *suite) canary(name string) string {
	c := "canary-" + s.run + "-" + name + "-" + randomHex(4)
	s.mu.Lock()
	s.canaries = append(s.canaries, c)
	s.mu.Unlock()
	return c
}

func (s *suite) secret(v ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, x := range v {
		if x != "" {
			s.secrets = append(s.secrets, x)
		}
	}
}

// leaks returns the canaries and credentials text shows.
func (s *suite) leaks(text []byte) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var found []string
	for _, c := range append(append([]string(nil), s.canaries...), s.secrets...) {
		if bytes.Contains(text, []byte(c)) {
			found = append(found, c)
		}
	}
	return found
}

// checkError fails the test when err shows a canary or a credential. Every
// error the suite sees goes through it.
func (s *suite) checkError(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	s.mu.Lock()
	s.errors++
	s.mu.Unlock()
	if leaked := s.leaks([]byte(err.Error())); len(leaked) > 0 {
		// The error itself is not printed: it holds a value.
		t.Errorf("an error of reason %s carries %d canary or credential strings", providers.ReasonOf(err), len(leaked))
	}
}

// wantReason checks that err is a provider error of one of reasons, and
// shows no canary.
func (s *suite) wantReason(t *testing.T, err error, what string, reasons ...providers.Reason) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: no error, want %v", what, reasons)
		return
	}
	s.checkError(t, err)
	var pe *providers.Error
	got := providers.ReasonOf(err)
	for _, r := range reasons {
		if got == r && asProviderError(err, &pe) {
			t.Logf("%s: %s", what, s.printable(err))
			return
		}
	}
	t.Errorf("%s: reason %s (provider error: %v), want %v: %s", what, got, asProviderError(err, &pe), reasons, s.printable(err))
}

func asProviderError(err error, pe **providers.Error) bool { return errors.As(err, pe) }

// printable is err's text, unless it leaks (then checkError has failed the
// test already, and the text is not shown).
func (s *suite) printable(err error) string {
	if len(s.leaks([]byte(err.Error()))) > 0 {
		return "(message withheld: it carries a canary or credential)"
	}
	return err.Error()
}

// must fails the test on an unexpected error, without showing a value.
func (s *suite) must(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		s.checkError(t, err)
		t.Fatalf("%s: %s", what, s.printable(err))
	}
}

func (s *suite) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// env is what veil-apiserver gives clients, with plaintext allowed (moto
// serves HTTP on loopback).
func env() providers.Env {
	return providers.Env{DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext, AllowPlaintext: true}
}

func (st Store) providerStore() *providers.Store {
	spec := st.Spec
	return &providers.Store{Kind: configv1alpha1.SecretStoreKind, Namespace: Namespace, Name: StoreName, Generation: 1, Spec: &spec}
}

// client builds a client of the store under test as it is now, as
// veil-apiserver does: the registered provider, credentials read through
// the real credentials.Reader.
func (s *suite) client(t *testing.T) providers.Client {
	t.Helper()
	return s.clientOf(t, s.f.Store(t))
}

func (s *suite) clientOf(t *testing.T, st Store) providers.Client {
	t.Helper()
	store := st.providerStore()
	p, err := providers.For(store.Spec)
	s.must(t, err, "the store's provider")
	c, err := p.NewClient(s.ctx(t), store, credentialsOf(st, store), env())
	s.must(t, err, "building a client")
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// ClientOf builds a client of st as veil-apiserver does (the registered
// provider, credentials read through the real credentials.Reader), for a
// provider's own tests beside the suite.
func ClientOf(t *testing.T, st Store) providers.Client {
	t.Helper()
	store := st.providerStore()
	p, err := providers.For(store.Spec)
	if err != nil {
		t.Fatal(err)
	}
	c, err := p.NewClient(context.Background(), store, credentialsOf(st, store), env())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// credentialsOf reads st's objects through the real credentials.Reader,
// which confines a store to its namespace.
func credentialsOf(st Store, store *providers.Store) providers.Credentials {
	return credentials.NewReader(fake.NewClientset(st.Objects...), 0).ForStore(store)
}

// klogCapture holds what Veil logged through klog during a Run.
type klogCapture struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (k *klogCapture) Write(p []byte) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.buf.Write(p)
}

func (k *klogCapture) bytes() []byte {
	klog.Flush()
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]byte(nil), k.buf.Bytes()...)
}

func (k *klogCapture) restore() {
	klog.Flush()
	klog.SetOutput(os.Stderr)
	klog.LogToStderr(true)
}

// captureKlog sends klog's output (Veil's own logs) to memory, and to
// stderr as well, so that the canary search sees it.
func captureKlog() *klogCapture {
	k := &klogCapture{}
	klog.LogToStderr(false)
	klog.SetOutput(io.MultiWriter(k, os.Stderr))
	return k
}
