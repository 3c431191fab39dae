package lrs

import (
	"testing"

	"google.golang.org/protobuf/proto"

	lrsv3 "github.com/envoyproxy/go-control-plane/envoy/service/load_stats/v3"
)

// FuzzDecodeForward feeds arbitrary bytes to the peer listener's decoder:
// it never panics, and what it accepts keeps the aggregator's bounds (at
// most maxForwardedOrigins origins per key, of known classes, errors never
// above requests) and encodes back to what it decoded.
func FuzzDecodeForward(f *testing.F) {
	seed := encodeForward("replica-b", map[Key]ByOrigin{
		canary: {{Class: ClassAuthenticated, Identity: "token:web/frontend"}: {Requests: 10, Errors: 1, Issued: 10, InFlight: 2},
			{Class: ClassLegacy, Identity: "legacy:shop"}: {Requests: 5}},
		stable: {anyone: {Requests: 100}},
	})
	b, err := proto.Marshal(seed)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		var req lrsv3.LoadStatsRequest
		if proto.Unmarshal(raw, &req) != nil {
			return
		}
		source, totals, err := decodeForward(&req)
		if err != nil {
			return
		}
		for k, m := range totals {
			if len(m) == 0 || len(m) > maxForwardedOrigins {
				t.Fatalf("key %s decoded with %d origins", k, len(m))
			}
			for o, tot := range m {
				if !o.Class.Valid() || tot.Errors > tot.Requests {
					t.Fatalf("key %s origin %+v decoded as %+v", k, o, tot)
				}
			}
		}
		again, totals2, err := decodeForward(encodeForward(source, totals))
		if err != nil || again != source || len(totals2) != len(totals) {
			t.Fatalf("re-encoding what was accepted: source %q→%q, %d→%d keys, error %v", source, again, len(totals), len(totals2), err)
		}
	})
}
