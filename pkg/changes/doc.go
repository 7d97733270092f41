// Package changes carries the news that remote values changed to every
// veil-apiserver replica, through the Kubernetes API and nothing else.
//
// A change is written into the status of each ExternalSecret that reads a
// changed key (status.lastValueChange, by Marker): that bumps the
// ExternalSecret's resource version, so
//   - every replica's informer sees it, and each replica reads again the
//     values it cached before it first saw that change (Seen);
//   - watchers of externalsecretvalues, whose watch is a watch of
//     ExternalSecrets, are sent the new values;
//   - veil-syncer, which watches ExternalSecrets, syncs the target at once.
//
// Changes come from three places: a push through veil-apiserver (marked
// before the push is answered), a change detected at the provider, and a
// change of a store's spec (both by Detector, on the one replica that holds
// the lease, so replicas do not multiply provider calls).
package changes
