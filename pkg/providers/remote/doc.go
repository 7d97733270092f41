// Package remote serves a provider out of process, and reaches one.
//
// Serve (the provider side, run by veil-provider) answers the protocol of
// proto/veil/provider/v1 with an ordinary providers.Provider (vault, aws,
// fake): out of process and in process share one implementation. It trusts
// nothing its caller says: it serves only the stores of its own Config,
// with the credentials that Config names, and only keys under each store's
// prefixes, within message-size, rate and concurrency bounds. For a backend
// that detects changes itself (providers.ChangeWatcher) it serves change
// streams (WatchChanges), within the same configuration and bounds.
//
// Provider (the veil-apiserver side) is a providers.Provider whose clients
// call such a process over one gRPC connection per endpoint. Both sides
// authenticate with mutual TLS against CA files, accept one pinned peer
// identity, and read their certificate files again when they change.
package remote

// ProtocolVersion is the protocol version this package speaks; a client
// and a provider agree on one in Handshake. A change that an older peer
// would misread gets a new version, served next to the old one for a
// release.
const ProtocolVersion uint32 = 1

// supportedVersions are the versions this package serves, newest first.
var supportedVersions = []uint32{ProtocolVersion}
