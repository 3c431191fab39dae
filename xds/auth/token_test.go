package auth

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestServiceAccountIdentity(t *testing.T) {
	for user, want := range map[string]*Identity{
		"system:serviceaccount:shop:web":       {Method: MethodToken, Namespace: "shop", Name: "web"},
		"system:serviceaccount:shop:web:extra": nil,
		"system:serviceaccount::web":           nil,
		"system:serviceaccount:shop:":          nil,
		"system:serviceaccount:shop":           nil,
		"system:admin":                         nil,
		"":                                     nil,
	} {
		got, err := ServiceAccountIdentity(user, MethodToken)
		switch {
		case want == nil && !errors.Is(err, ErrUnauthenticated):
			t.Errorf("%q: %v, %v; want refused", user, got, err)
		case want != nil && (err != nil || got != *want):
			t.Errorf("%q: %v, %v; want %v", user, got, err, *want)
		}
	}
}

func TestJWTExpiry(t *testing.T) {
	if _, ok := jwtExpiry("a.!!!.c"); ok {
		t.Error("expiry read from a token that is not base64")
	}
	if _, ok := jwtExpiry("opaque"); ok {
		t.Error("expiry read from an opaque token")
	}
	if _, ok := jwtExpiry("a.eyJzdWIiOiJ4In0.c"); ok { // {"sub":"x"}
		t.Error("expiry read from a token without exp")
	}
	if exp, ok := jwtExpiry("a.eyJleHAiOjE3MDAwMDAwMDB9.c"); !ok || exp.Unix() != 1700000000 { // {"exp":1700000000}
		t.Errorf("exp = %v, %v", exp, ok)
	}
}

func TestTruncateKeepsRunes(t *testing.T) {
	s := strings.Repeat("é", 10) // 2 bytes each
	for n := range 21 {
		if got := truncate(s, n); !utf8.ValidString(got) || len(strings.TrimSuffix(got, "…")) > n {
			t.Errorf("truncate(%d) = %q", n, got)
		}
	}
}

func TestBootstrapJSON(t *testing.T) {
	b, err := Bootstrap{Server: "127.0.0.1:18000", CAFile: "/ca", TokenFile: "/tok", NodeID: "n", Namespace: "shop"}.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Servers []struct {
			ChannelCreds []struct {
				Type   string            `json:"type"`
				Config map[string]string `json:"config"`
			} `json:"channel_creds"`
			CallCreds []struct {
				Type   string            `json:"type"`
				Config map[string]string `json:"config"`
			} `json:"call_creds"`
		} `json:"xds_servers"`
		Node struct {
			Metadata map[string]string `json:"metadata"`
		} `json:"node"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	s := got.Servers[0]
	if s.ChannelCreds[0].Type != "tls" || s.ChannelCreds[0].Config["ca_certificate_file"] != "/ca" ||
		s.CallCreds[0].Type != "jwt_token_file" || s.CallCreds[0].Config["jwt_token_file"] != "/tok" ||
		got.Node.Metadata[NodeNamespaceKey] != "shop" {
		t.Fatalf("bootstrap %s", b)
	}
	for _, bad := range []Bootstrap{
		{Server: "s", NodeID: "n", TokenFile: "/tok"},             // a token in plaintext
		{Server: "s", NodeID: "n", CAFile: "/ca", CertFile: "/c"}, // a certificate without its key
		{NodeID: "n"},
	} {
		if _, err := bad.JSON(); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
}
