# Veil. `make run` starts a local control plane with Veil; `make test` runs
# everything CI runs. Real components are built once into
# $(VEIL_CACHE_DIR) (default ~/.cache/veil), outside the repository.

GO ?= go
E2E_TIMEOUT ?= 30m
FUZZTIME_SHORT ?= 5s
FUZZTIME ?= 5m

.PHONY: all build images run run-node test prebuild-race test-unit test-chart test-images test-fuzz fuzz test-e2e test-node check-moto verify verify-gofmt verify-vet verify-tidy verify-codegen verify-test-order verify-imports verify-version update tools bench certs clean

all: build

## build: the binaries, into bin/ (veil is the users' CLI: veil convert;
## veil-provider-vault and veil-provider-aws serve one provider out of
## process, linking that backend alone; veil-provider links every backend,
## for tests and demos, and has no image; veil-provider-kubernetes is a
## third party's provider as an example, with no image yet)
build:
	$(GO) build -o bin/veil-apiserver ./cmd/apiserver
	$(GO) build -o bin/veil-syncer ./cmd/syncer
	$(GO) build -o bin/veil-provider ./cmd/veil-provider
	$(GO) build -o bin/veil-provider-vault ./cmd/veil-provider-vault
	$(GO) build -o bin/veil-provider-aws ./cmd/veil-provider-aws
	$(GO) build -o bin/veil ./cmd/veil
	$(GO) build -o bin/veil-provider-kubernetes ./providers/kubernetes/cmd/veil-provider-kubernetes

## images: the container images, without a container engine:
## out/images/veil-{apiserver,syncer,provider-vault,provider-aws}.tar (OCI
## layout and docker archive in one; `ctr image import`, `kind load
## image-archive`, `docker load`) and their SBOMs (.spdx.json), tagged
## ghcr.io/veil-dev/NAME:v$(cat VERSION). Each provider image links its one
## backend (cmd/veil-provider, with every backend, has none).
## IMAGE_ARCH=arm64 for arm64.
IMAGE_ARCH ?= amd64
images:
	$(GO) run ./hack/image -arch $(IMAGE_ARCH) -out out/images$(if $(filter-out amd64,$(IMAGE_ARCH)),/$(IMAGE_ARCH))

## run: a local control plane with veil-apiserver and demo stores, until Ctrl-C
run: tools
	$(GO) run ./test/localcluster

## run-node: the same control plane with a real node on this machine
## (test/node; root), Veil installed on it with the Helm chart from the
## images of make images, and the fake demo store, until Ctrl-C, which
## restores the machine
run-node: tools images
	$(GO) run ./test/localcluster -node

## test: what CI runs: verification and the real components (built once)
## side by side, then unit tests, fuzzing and end-to-end tests. Tests never
## build a component themselves; hack/verify-test-order.sh checks the order.
## On a fresh machine verification, the builds and compiling the race-
## instrumented packages each leave a core idle while they download modules
## or link, so they run together.
test:
	@$(MAKE) --no-print-directory -j3 verify tools prebuild-race
	@$(MAKE) --no-print-directory test-unit test-chart test-images test-fuzz test-e2e test-node

## test-unit: unit tests, with the race detector (the Vault and AWS
## provider tests run against real servers, so they need tools too)
test-unit: tools
	@bash hack/phase.sh unit $(GO) test -race -count=1 ./pkg/... ./cmd/... ./providers/... ./test/harness/...

## test-chart: the Helm chart charts/veil, with Helm and kustomize as
## libraries (no binary): with default values it renders what
## `kubectl kustomize artifacts/deploy` gives (the documented differences
## aside), with providers on what artifacts/providers gives, whose
## NetworkPolicies admit only veil-apiserver, `helm lint` is clean, values.schema.json and every option work,
## and a real kube-apiserver (the harness's, so it needs tools) accepts
## what it renders in a server-side dry run (hack/charttest). About 40 s
## warm; on top of what the other phases compile, 1.4 CPU-minutes from
## an empty Go build cache.
test-chart: tools
	@bash hack/phase.sh chart $(GO) test -count=1 ./hack/charttest/...

## test-images: builds every image twice and checks they are the same
## byte for byte, run as 65532 with no shell, say their VERSION and carry
## an SBOM. It compiles everything again with -trimpath: minutes the first
## time on a machine, under a minute after.
test-images:
	@bash hack/phase.sh images $(GO) test -count=1 -timeout 30m ./hack/image/...

## prebuild-race: compiles the race-instrumented packages the unit tests
## need (into Go's build cache) while the real components build; it runs
## no test.
prebuild-race:
	@bash hack/phase.sh prebuild-race $(GO) build -race ./pkg/... ./providers/... ./test/harness/...

## test-fuzz: every fuzz target briefly (their seeds already ran as unit tests)
test-fuzz:
	@bash hack/phase.sh fuzz bash hack/fuzz.sh $(FUZZTIME_SHORT)

## fuzz: every fuzz target for longer
fuzz:
	bash hack/fuzz.sh $(FUZZTIME)

## test-e2e: end-to-end tests against real etcd, kube-apiserver and providers
test-e2e: tools
	@bash hack/phase.sh e2e $(GO) test -count=1 -timeout $(E2E_TIMEOUT) ./test/e2e/...

## test-node: a real single-node Kubernetes node on this machine
## (containerd, runc and the CNI bridge from Debian's packages, kubelet and
## kube-scheduler built by make tools) runs the images of make images,
## installed with the Helm chart, against the harness's control plane:
## pods Ready under the shipped securityContext, the APIService Available
## through the Service, kubectl reads a value, no failed read while a pod
## is deleted or during helm upgrade, helm uninstall leaves nothing stuck.
## Needs root; it changes sysctls, iptables, mounts and cgroups for a
## while and undoes all of it, then checks nothing is left (test/node).
## About 2 minutes.
test-node: tools images
	@bash hack/phase.sh node $(GO) test -count=1 -timeout 20m ./test/node/...

## tools: build (once) and cache the real components the tests run
tools: check-moto
	@bash hack/phase.sh tools bash hack/install-tools.sh

# moto (the AWS emulator) comes with the machine image; no registry here
# can install it, so say so instead of failing obscurely later.
check-moto:
	@python3 -c 'import moto' 2>/dev/null || { echo "moto is not installed: the AWS end-to-end tests need python3 with moto 5.x (pip install 'moto[server]==5.2.1')"; exit 1; }

## verify: formatting, vet, go.mod tidiness, generated code, test order,
## the import rules of docs/architecture.md, the images artifacts/ deploys
## tagged with VERSION
verify:
	@bash hack/phase.sh verify $(MAKE) --no-print-directory verify-gofmt verify-vet verify-tidy verify-codegen verify-test-order verify-imports verify-version

verify-test-order:
	@bash hack/verify-test-order.sh

verify-imports:
	@bash hack/verify-imports.sh

verify-version:
	@bash hack/verify-version.sh

verify-gofmt:
	@out=$$(gofmt -l $$(git ls-files -co --exclude-standard '*.go')); \
	if [ -n "$$out" ]; then echo "not gofmt-ed:"; echo "$$out"; exit 1; fi

verify-vet:
	$(GO) vet ./...

verify-tidy:
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run 'go mod tidy'"; exit 1; }

verify-codegen:
	bash hack/verify-codegen.sh

## update: regenerate code, OpenAPI, clientset and CRDs from the API types
update:
	bash hack/update-codegen.sh

## bench: performance against the native paths, on a real control plane;
## then a read through an out-of-process provider (gRPC, mutual TLS) vs the
## same provider in process
bench: tools
	$(GO) run ./test/perf
	$(GO) test -run '^$$' -bench BenchmarkGet -benchtime 20000x ./pkg/providers/remote

## certs: a serving certificate for a real install, in artifacts/deploy/tls
certs:
	$(GO) run ./hack/gencerts

clean:
	rm -rf bin _output out
