// Package charttest holds the tests of the Helm chart charts/veil
// (chart_test.go): rendered with its default values it is
// `kubectl kustomize artifacts/deploy`, with providers on it is
// artifacts/providers (providers_test.go, which also checks that only
// veil-apiserver reaches them and that they have no API access), it lints
// clean, and its schema and options work. `make test-chart` runs them; nothing else imports it.
package charttest
