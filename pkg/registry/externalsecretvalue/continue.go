package externalsecretvalue

import (
	"encoding/base64"
	"encoding/json"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
)

// A continue token names the last ExternalSecret of the page before: lists
// are sorted by namespace and name, so the next page starts after it. It
// names no value, and it holds nothing a client could not list itself: a
// forged token only skips ahead. Values have no resource version, so the
// pages are not a snapshot; an ExternalSecret created behind the token is
// seen by the next list, like kube-apiserver's lists past their
// consistency window.
type continueToken struct {
	Version   string `json:"v"`
	Namespace string `json:"ns"`
	Name      string `json:"name"`
}

const continueVersion = "veil/1"

func encodeContinue(namespace, name string) string {
	b, _ := json.Marshal(continueToken{Version: continueVersion, Namespace: namespace, Name: name}) // strings always encode
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeContinue returns the token of opts, nil when there is none.
func decodeContinue(opts *metainternalversion.ListOptions) (*continueToken, error) {
	if opts == nil || opts.Continue == "" {
		return nil, nil
	}
	bad := apierrors.NewBadRequest("the continue token is not one this server issued; list again without it")
	if len(opts.Continue) > 1024 {
		return nil, bad
	}
	b, err := base64.RawURLEncoding.DecodeString(opts.Continue)
	if err != nil {
		return nil, bad
	}
	var t continueToken
	if json.Unmarshal(b, &t) != nil || t.Version != continueVersion || t.Name == "" {
		return nil, bad
	}
	return &t, nil
}

// after says whether es sorts after the token's ExternalSecret.
func after(es *configv1alpha1.ExternalSecret, t *continueToken) bool {
	if es.Namespace != t.Namespace {
		return es.Namespace > t.Namespace
	}
	return es.Name > t.Name
}
