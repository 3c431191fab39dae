// Package server serves Envoy resources to xDS clients over ADS, both
// state-of-the-world and delta, and tracks what every connected proxy has
// acknowledged.
//
// Resources are held in one go-control-plane LinearCache per type, muxed into
// one cache, so each resource is serialized once per change and the same bytes
// are fanned out to every stream that subscribed to it.
//
// # Versions
//
// A resource's content version is the hex SHA-256 of its deterministic
// protobuf encoding ([ContentVersion]); it is the same string go-control-plane
// uses as the per-resource version in delta responses. A state-of-the-world
// version_info describes a whole response; it is the hex SHA-256 of the
// sorted name and content-version pairs the stream holds of that type once
// it applies the response (heldVersion). It is a pure function of content:
// every replica, and a restarted one, gives a stream the same version for the
// same contents, and a stream of another form or namespace, which holds other
// contents, gets another version.
//
// A proxy that opens a new stream (to another replica, or after a restart)
// presents the version it last acknowledged. If that is the version of what
// this replica would send it now, it holds exactly that: it counts as having
// acknowledged it at once and is sent nothing until something changes.
// Otherwise it is sent everything, as a new client. ACKs are mapped to
// contents by nonce; the server remembers, per resource, which content each
// cache change held, to learn the contents of what it sends. [Server.WaitAcked]
// and [Server.Synced] always speak content versions.
//
// # Updates
//
// [Server.Update] publishes a complete desired state with make-before-break:
// new and changed clusters and endpoints first, then listeners and routes (a
// route change that starts sending a proxy traffic to a cluster its routes
// only named waits until the proxy loaded that cluster, see warmload.go), and
// clusters and endpoints that are no longer wanted only after every proxy
// whose routes name them acknowledged the routes that stop doing so (bounded
// by Options.AckTimeout).
//
// # Who sees what
//
// [Server.Publish] takes, with the resources, their [Grants]: a stream whose
// context carries an auth.Identity sees only what its namespace is granted
// (see scope.go); a stream without one sees everything, unless
// Options.RequireIdentity refuses it. [Server.Acknowledged] tells load
// reporting which clusters an identity was sent and acknowledged. A stream
// may subscribe to at most Options.MaxSubscribedNames names, and only to the
// types in [Types].
package server
