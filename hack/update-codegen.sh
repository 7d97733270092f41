#!/usr/bin/env bash
# Regenerates everything derived from the API types: deepcopy, conversion,
# defaults, OpenAPI, the typed clientset with listers and informers, and the
# CRD manifests. Generators run with `go tool`, at the versions pinned in
# go.mod's tool block. Run from the root of a checkout (or of a copy of one:
# hack/verify-codegen.sh runs it in a temporary copy).
set -euo pipefail
cd "$(dirname "$0")/.."

MODULE=github.com/veil-dev/veil
APIS=$MODULE/pkg/apis
HEADER=hack/boilerplate.go.txt
GEN=pkg/generated

rm -rf "$GEN"
find pkg/apis -name 'zz_generated.*.go' -delete

go tool deepcopy-gen --go-header-file "$HEADER" --output-file zz_generated.deepcopy.go \
  "$APIS/config/v1alpha1" "$APIS/externalsecrets" "$APIS/externalsecrets/v1alpha1"

go tool conversion-gen --go-header-file "$HEADER" --output-file zz_generated.conversion.go \
  "$APIS/externalsecrets/v1alpha1"

go tool defaulter-gen --go-header-file "$HEADER" --output-file zz_generated.defaults.go \
  "$APIS/externalsecrets/v1alpha1"

# Only the aggregated group needs OpenAPI from Go: kube-apiserver builds the
# CRDs' OpenAPI from their schemas. The apimachinery packages are inputs
# because our types embed theirs; they are read-only (in the module cache).
readonly_pkgs=(k8s.io/apimachinery/pkg/apis/meta/v1 k8s.io/apimachinery/pkg/runtime
  k8s.io/apimachinery/pkg/version k8s.io/apimachinery/pkg/api/resource
  k8s.io/apimachinery/pkg/types k8s.io/apimachinery/pkg/util/intstr time)
go tool openapi-gen --go-header-file "$HEADER" --output-file zz_generated.openapi.go \
  --output-dir "$GEN/openapi" --output-pkg "$MODULE/$GEN/openapi" \
  --output-model-name-file zz_generated.model_name.go \
  --report-filename hack/openapi-violations.list \
  $(printf -- '--readonly-pkg %s ' "${readonly_pkgs[@]}") \
  k8s.io/apimachinery/pkg/apis/meta/v1 k8s.io/apimachinery/pkg/runtime \
  k8s.io/apimachinery/pkg/version k8s.io/apimachinery/pkg/api/resource \
  "$APIS/externalsecrets/v1alpha1"

go tool client-gen --go-header-file "$HEADER" \
  --output-dir "$GEN/clientset" --output-pkg "$MODULE/$GEN/clientset" \
  --clientset-name versioned --input-base "$APIS" \
  --input config/v1alpha1 --input externalsecrets/v1alpha1

# Listers and informers for what supports list and watch: the CRDs and
# externalsecretvalues (SecretPush is create-only, so none is generated).
go tool lister-gen --go-header-file "$HEADER" \
  --output-dir "$GEN/listers" --output-pkg "$MODULE/$GEN/listers" \
  "$APIS/config/v1alpha1" "$APIS/externalsecrets/v1alpha1"
go tool informer-gen --go-header-file "$HEADER" \
  --output-dir "$GEN/informers" --output-pkg "$MODULE/$GEN/informers" \
  --versioned-clientset-package "$MODULE/$GEN/clientset/versioned" \
  --listers-package "$MODULE/$GEN/listers" \
  "$APIS/config/v1alpha1" "$APIS/externalsecrets/v1alpha1"

rm -f artifacts/base/crds/config.veil.dev_*.yaml
go tool controller-gen crd:crdVersions=v1 paths=./pkg/apis/config/... output:crd:artifacts:config=artifacts/base/crds

# The Helm chart installs the same CRDs (crds/ is not templated; the
# chart's test checks the copies).
rm -f charts/veil/crds/config.veil.dev_*.yaml
cp artifacts/base/crds/config.veil.dev_*.yaml charts/veil/crds/

# The out-of-process provider protocol (pkg/providers/remote), without
# protoc: hack/protogen parses the .proto files in Go and runs the plugins
# the tool block pins.
find pkg/providers/remote/proto -name '*.pb.go' -delete
go run ./hack/protogen -root pkg/providers/remote/proto \
  -plugin protoc-gen-go -plugin protoc-gen-go-grpc \
  veil/provider/v1/provider.proto
