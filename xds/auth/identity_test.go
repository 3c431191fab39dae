package auth

import (
	"context"
	"errors"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

func node(ns string) *corev3.Node {
	n := &corev3.Node{Id: "n"}
	if ns != "" {
		n.Metadata = &structpb.Struct{Fields: map[string]*structpb.Value{NodeNamespaceKey: structpb.NewStringValue(ns)}}
	}
	return n
}

func TestBind(t *testing.T) {
	tok := Identity{Method: MethodToken, Namespace: "shop", Name: "web"}
	for _, tc := range []struct {
		name string
		id   Identity
		node *corev3.Node
		want Identity
		err  error
	}{
		{"token without claim", tok, node(""), tok, nil},
		{"token with own namespace", tok, node("shop"), tok, nil},
		{"token claiming another namespace", tok, node("bank"), Identity{}, ErrNamespaceMismatch},
		{"legacy takes the claim", Identity{Method: MethodLegacy}, node("shop"), Identity{Method: MethodLegacy, Namespace: "shop"}, nil},
		{"legacy without claim", Identity{Method: MethodLegacy}, node(""), Identity{}, ErrNoNamespace},
		{"legacy nil node", Identity{Method: MethodLegacy}, nil, Identity{}, ErrNoNamespace},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.id.Bind(tc.node)
			if !errors.Is(err, tc.err) || got != tc.want {
				t.Fatalf("Bind = %v, %v; want %v, %v", got, err, tc.want, tc.err)
			}
		})
	}
}

func TestAuthenticatedAndContext(t *testing.T) {
	for m, want := range map[Method]bool{MethodToken: true, MethodCertificate: true, MethodPeer: true, MethodLegacy: false, "": false} {
		if got := (Identity{Method: m}).Authenticated(); got != want {
			t.Errorf("%q.Authenticated() = %v", m, got)
		}
	}
	if _, ok := FromContext(context.Background()); ok {
		t.Fatal("identity in an empty context")
	}
	id := Identity{Method: MethodCertificate, Namespace: "a", Name: "b"}
	if got, ok := FromContext(NewContext(context.Background(), id)); !ok || got != id {
		t.Fatalf("FromContext = %v, %v", got, ok)
	}
	if s := id.String(); s != "certificate:a/b" {
		t.Fatalf("String = %q", s)
	}
}
