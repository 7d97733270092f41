// Package apiserver assembles veil-apiserver: a generic Kubernetes API
// server without etcd and without admission that serves the virtual
// resources of externalsecrets.veil.dev.
package apiserver

import (
	"context"
	"reflect"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apiserver/pkg/registry/rest"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/apiserver/pkg/server/healthz"

	"github.com/veil-dev/veil/pkg/apis/externalsecrets"
	"github.com/veil-dev/veil/pkg/apis/externalsecrets/install"
	configclient "github.com/veil-dev/veil/pkg/generated/clientset/versioned/typed/config/v1alpha1"
	configlisters "github.com/veil-dev/veil/pkg/generated/listers/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/registry/externalsecretvalue"
	"github.com/veil-dev/veil/pkg/registry/secretpush"
	"github.com/veil-dev/veil/pkg/throttle"
)

var (
	// Scheme holds the types veil-apiserver serves.
	Scheme = runtime.NewScheme()
	// Codecs encodes and decodes them.
	Codecs = serializer.NewCodecFactory(Scheme)
)

func init() {
	install.Install(Scheme)
	// The generic server encodes options and status of the core group.
	metav1.AddToGroupVersion(Scheme, schema.GroupVersion{Version: "v1"})
	Scheme.AddUnversionedTypes(schema.GroupVersion{Version: "v1"},
		&metav1.Status{}, &metav1.APIVersions{}, &metav1.APIGroupList{}, &metav1.APIGroup{}, &metav1.APIResourceList{})
}

// ExtraConfig is what Veil adds to the generic server's configuration.
type ExtraConfig struct {
	ExternalSecrets configlisters.ExternalSecretLister
	// ExternalSecretsVersion is the resource version ExternalSecrets has
	// seen (its informer's LastSyncResourceVersion): lists of values
	// answer with it, and watches resume from it.
	ExternalSecretsVersion func() string
	// MaxWatchesPerNamespace bounds the watches of values open at once
	// in a namespace; 0 is the default.
	MaxWatchesPerNamespace int
	PushSecrets            configlisters.PushSecretLister
	// Live reads what informers do not have yet.
	Live     configclient.ConfigV1alpha1Interface
	Resolver externalsecretvalue.Resolver
	// Reads is every namespace's read budget; nil turns it off.
	Reads  *throttle.Reads
	Pusher secretpush.Pusher
	// Informers is Veil's own informer factory (the CRDs): the server
	// starts it once it runs, and reports ready only once its informers
	// have synced; before that, a read could answer NotFound for an
	// ExternalSecret that exists. The Kubernetes informers are in
	// GenericConfig.SharedInformerFactory, which the generic server starts
	// and checks itself.
	Informers InformerFactory
	// Controllers run from the server's start until it stops.
	Controllers []func(ctx context.Context)
	// Shutdown releases what the server holds (provider clients revoke
	// their tokens) when the server is told to stop. The server waits for
	// it, so it must return within a bound of its own.
	Shutdown func() error
}

// InformerFactory is what the server needs of a generated informer factory.
type InformerFactory interface {
	Start(stop <-chan struct{})
	WaitForCacheSync(stop <-chan struct{}) map[reflect.Type]bool
}

// Config is the whole configuration of veil-apiserver.
type Config struct {
	GenericConfig *genericapiserver.RecommendedConfig
	ExtraConfig   ExtraConfig
}

type completedConfig struct {
	GenericConfig genericapiserver.CompletedConfig
	ExtraConfig   *ExtraConfig
}

// CompletedConfig can only be had from Config.Complete, so no server is
// built from a configuration whose defaults were not filled in.
type CompletedConfig struct {
	*completedConfig
}

// Complete fills in defaults.
func (c *Config) Complete() CompletedConfig {
	return CompletedConfig{&completedConfig{c.GenericConfig.Complete(), &c.ExtraConfig}}
}

// Server is a running veil-apiserver.
type Server struct {
	GenericAPIServer *genericapiserver.GenericAPIServer
}

// New builds the server and installs the externalsecrets.veil.dev group.
func (c completedConfig) New() (*Server, error) {
	generic, err := c.GenericConfig.New("veil-apiserver", genericapiserver.NewEmptyDelegate())
	if err != nil {
		return nil, err
	}

	group := genericapiserver.NewDefaultAPIGroupInfo(externalsecrets.GroupName, Scheme, metav1.ParameterCodec, Codecs)
	group.NegotiatedSerializer = jsonAndYAMLOnly{Codecs}
	group.VersionedResourcesStorageMap["v1alpha1"] = map[string]rest.Storage{
		"externalsecretvalues": externalsecretvalue.NewREST(c.ExtraConfig.ExternalSecrets, c.ExtraConfig.Live, c.ExtraConfig.Resolver, externalsecretvalue.Options{
			Reads:                  c.ExtraConfig.Reads,
			Authorizer:             c.GenericConfig.Authorization.Authorizer,
			ListVersion:            c.ExtraConfig.ExternalSecretsVersion,
			MaxWatchesPerNamespace: c.ExtraConfig.MaxWatchesPerNamespace,
		}),
		"secretpushes": secretpush.NewREST(c.ExtraConfig.PushSecrets, c.ExtraConfig.Live, c.ExtraConfig.Pusher),
	}
	if err := generic.InstallAPIGroup(&group); err != nil {
		return nil, err
	}

	extra := c.ExtraConfig
	generic.AddPostStartHookOrDie("start-veil-informers", func(ctx genericapiserver.PostStartHookContext) error {
		extra.Informers.Start(ctx.Done())
		for _, run := range extra.Controllers {
			go run(ctx)
		}
		return nil
	})
	// The informers are requested before the hook starts them, and
	// /readyz fails until the hook has run, so this check cannot pass on an
	// informer that was never started. Its name is not the generic
	// server's "informer-sync", which checks the Kubernetes informers.
	if err := generic.AddReadyzChecks(healthz.NamedCheck("veil-informers-synced", healthz.NewInformerSyncHealthz(extra.Informers).Check)); err != nil {
		return nil, err
	}
	if err := generic.AddPreShutdownHook("close-veil-provider-clients", extra.Shutdown); err != nil {
		return nil, err
	}
	return &Server{GenericAPIServer: generic}, nil
}

// jsonAndYAMLOnly advertises only the media types Veil's types can be
// encoded in: they have no generated protobuf, and a client told protobuf
// works would get a 500 instead of falling back to JSON.
type jsonAndYAMLOnly struct{ serializer.CodecFactory }

func (s jsonAndYAMLOnly) SupportedMediaTypes() []runtime.SerializerInfo {
	var out []runtime.SerializerInfo
	for _, info := range s.CodecFactory.SupportedMediaTypes() {
		if info.MediaType == runtime.ContentTypeJSON || info.MediaType == runtime.ContentTypeYAML {
			out = append(out, info)
		}
	}
	return out
}
