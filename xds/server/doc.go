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
// uses as the per-resource version in delta responses. State-of-the-world
// responses carry the LinearCache's version instead: an instance prefix plus a
// counter that grows on every change of that type (a sotw version_info
// describes a whole response, not one resource, and the cache does not allow
// choosing it). The server keeps, per resource, which content each cache
// version held, so an ACK of a sotw version is mapped back to the content
// versions the proxy now carries. [Server.WaitAcked] and [Server.Synced] always
// speak content versions.
//
// # Updates
//
// [Server.Update] publishes a complete desired state with make-before-break:
// new and changed clusters and endpoints first, then listeners and routes, and
// clusters and endpoints that are no longer wanted only after every proxy
// subscribed to the listeners and routes acknowledged them (bounded by
// Options.AckTimeout).
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
