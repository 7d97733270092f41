// Package artifacts holds Veil's install manifests. Go code embeds the
// CustomResourceDefinitions from here, so tools such as `veil convert`
// check objects against exactly the schemas a cluster would.
package artifacts

import "embed"

// CRDs are the CustomResourceDefinitions of config.veil.dev.
//
//go:embed base/crds/*.yaml
var CRDs embed.FS
