package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
)

// Bootstrap describes the grpc-go xDS bootstrap of a client of Sluice.
// With CAFile set the client speaks TLS (gRFC A65 channel credentials
// "tls") and proves its identity with TokenFile (gRFC A97 call credentials
// "jwt_token_file"; grpc-go sends it only with
// GRPC_EXPERIMENTAL_XDS_BOOTSTRAP_CALL_CREDS=true) or with CertFile and
// KeyFile. Without CAFile it is plaintext, for the legacy listener, and
// must name its Namespace.
type Bootstrap struct {
	// Server is host:port of the xDS listener.
	Server string
	// Fallbacks are more listeners of the same kind (other replicas), tried
	// in order when the ones before are unreachable (gRFC A71).
	Fallbacks []string
	// CAFile verifies the serving certificate (Sluice's CA bundle).
	CAFile string
	// TokenFile holds a ServiceAccount token for Sluice's audience.
	TokenFile string
	// CertFile and KeyFile are a client certificate issued by Sluice.
	CertFile, KeyFile string
	// NodeID names the client; Zone is its locality.
	NodeID, Zone string
	// Namespace, when set, is claimed in node metadata
	// (NodeNamespaceKey).
	Namespace string
}

// JSON renders the bootstrap.
func (b Bootstrap) JSON() ([]byte, error) {
	if b.Server == "" || b.NodeID == "" {
		return nil, errors.New("xDS bootstrap: a server and a node id are required")
	}
	if b.CAFile == "" && (b.TokenFile != "" || b.CertFile != "") {
		return nil, errors.New("xDS bootstrap: a token or client certificate is only sent over TLS: set the CA file")
	}
	if (b.CertFile == "") != (b.KeyFile == "") {
		return nil, errors.New("xDS bootstrap: a client certificate needs both its file and its key file")
	}
	server := map[string]any{
		"server_uri":      b.Server,
		"channel_creds":   []any{map[string]any{"type": "insecure"}},
		"server_features": []string{"xds_v3"},
	}
	if b.CAFile != "" {
		tls := map[string]any{"ca_certificate_file": b.CAFile}
		if b.CertFile != "" {
			tls["certificate_file"], tls["private_key_file"] = b.CertFile, b.KeyFile
		}
		server["channel_creds"] = []any{map[string]any{"type": "tls", "config": tls}}
	}
	if b.TokenFile != "" {
		server["call_creds"] = []any{map[string]any{"type": "jwt_token_file", "config": map[string]any{"jwt_token_file": b.TokenFile}}}
	}
	node := map[string]any{"id": b.NodeID}
	if b.Zone != "" {
		node["locality"] = map[string]any{"zone": b.Zone}
	}
	if b.Namespace != "" {
		node["metadata"] = map[string]any{NodeNamespaceKey: b.Namespace}
	}
	servers := []any{server}
	for _, f := range b.Fallbacks {
		fallback := maps.Clone(server)
		fallback["server_uri"] = f
		servers = append(servers, fallback)
	}
	out, err := json.MarshalIndent(map[string]any{"xds_servers": servers, "node": node}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("xDS bootstrap: %w", err)
	}
	return out, nil
}
