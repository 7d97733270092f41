// Package stores owns SecretStores and ClusterSecretStores as
// veil-apiserver uses them, for reads and pushes alike:
//
//   - Lookup finds the store an object refers to (from the informer, else
//     from kube-apiserver), applies a ClusterSecretStore's spec.conditions
//     to the namespace and gives it its KeyScope, and refuses a store whose
//     endpoints are plaintext or not allowed, before any connection;
//   - Clients builds one provider client per store Identity and reuses it,
//     admitting its calls through the throttle;
//   - Identity is everything that decides what a client may read, and
//     builds every cache key of a store's values;
//   - Clients.Invalidate is how a write through a store makes the values
//     cached before it unreachable.
//
// A read goes registry → resolve → stores (and the value cache) → provider;
// a push goes registry → push → stores → provider.
package stores
