package lrs

import (
	"github.com/sluice-dev/sluice/xds/auth"
)

// Class says how far load from an origin is trusted.
type Class string

// Classes of origins.
const (
	// ClassAuthenticated: the reporting stream proved a ServiceAccount token
	// or a client certificate. Its load counts for every decision.
	ClassAuthenticated Class = "authenticated"
	// ClassLegacy: the reporting stream came through the plaintext legacy
	// listener. Its load counts for holding and rolling back, never as
	// evidence for promotion.
	ClassLegacy Class = "legacy"
	// ClassUnidentified: the stream carried no identity and the server does
	// not require one (Options.RequireIdentity unset: xDS authentication is
	// not configured). Its load is trusted as before authentication existed.
	ClassUnidentified Class = "unidentified"
)

// Valid reports whether c is one of the classes above.
func (c Class) Valid() bool {
	switch c {
	case ClassAuthenticated, ClassLegacy, ClassUnidentified:
		return true
	}
	return false
}

// Origin is who reported some load: the class of the reporting stream's
// identity and the identity itself.
type Origin struct {
	// Class is how far the load is trusted.
	Class Class
	// Identity is the reporting identity as auth.Identity.String() renders
	// it ("token:shop/frontend", "legacy:shop"), OtherIdentities once a key
	// holds MaxOriginsPerKey origins, and empty for ClassUnidentified.
	Identity string
}

// String renders the origin for logs and status: its identity, or its
// class when it has none.
func (o Origin) String() string {
	if o.Identity == "" {
		return string(o.Class)
	}
	return o.Identity
}

// OriginOf returns the origin of load reported over a stream whose identity
// is id.
func OriginOf(id auth.Identity) Origin {
	switch {
	case id.Method == auth.MethodLegacy:
		return Origin{Class: ClassLegacy, Identity: id.String()}
	case id.Authenticated():
		return Origin{Class: ClassAuthenticated, Identity: id.String()}
	}
	return Origin{Class: ClassUnidentified}
}

// MaxOriginsPerKey bounds the distinct origins kept per key: load from
// further identities is folded into Origin{Class, OtherIdentities} of its
// class, so no client can grow the totals without bound by minting
// identities, and legacy load never folds into authenticated load.
const MaxOriginsPerKey = 64

// OtherIdentities names the folded origin of a key's identities beyond
// MaxOriginsPerKey.
const OtherIdentities = "other"

// ByOrigin holds one key's totals per origin.
type ByOrigin map[Origin]Totals

// admit returns the origin under which o's load is kept in m: o itself when
// m knows it or has room, else its class's OtherIdentities.
func (m ByOrigin) admit(o Origin) Origin {
	if _, ok := m[o]; ok || o.Identity == OtherIdentities || o.Identity == "" {
		return o
	}
	named := 0
	for k := range m {
		if k.Identity != OtherIdentities && k.Identity != "" {
			named++
		}
	}
	if named < MaxOriginsPerKey {
		return o
	}
	return Origin{Class: o.Class, Identity: OtherIdentities}
}
