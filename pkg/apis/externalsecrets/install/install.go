// Package install registers the externalsecrets.veil.dev group in a scheme.
package install

import (
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"

	"github.com/veil-dev/veil/pkg/apis/externalsecrets"
	"github.com/veil-dev/veil/pkg/apis/externalsecrets/v1alpha1"
)

// Install registers the internal and every served version, v1alpha1 preferred.
func Install(scheme *runtime.Scheme) {
	utilruntime.Must(externalsecrets.AddToScheme(scheme))
	utilruntime.Must(v1alpha1.AddToScheme(scheme))
	utilruntime.Must(scheme.SetVersionPriority(v1alpha1.SchemeGroupVersion))
}
