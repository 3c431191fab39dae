package router

import (
	"strings"
	"testing"
)

func TestClusterNameRoundTrip(t *testing.T) {
	for _, id := range []ClusterID{
		{Namespace: "shop", Service: "checkout", Port: 9090, Track: TrackStable},
		{Namespace: "a", Service: "b-2", Port: 1, Track: TrackCanary},
		{Namespace: "kube-system", Service: "x", Port: 65535, Track: TrackSticky},
	} {
		name := ClusterName(id.Namespace, id.Service, id.Port, id.Track)
		if name != id.Name() {
			t.Errorf("ClusterName = %q, ClusterID.Name = %q", name, id.Name())
		}
		got, err := ParseClusterName(name)
		if err != nil {
			t.Fatalf("ParseClusterName(%q): %v", name, err)
		}
		if got != id {
			t.Errorf("ParseClusterName(%q) = %+v, want %+v", name, got, id)
		}
	}
}

func TestParseClusterNameErrors(t *testing.T) {
	tests := map[string]struct{ name, wantErr string }{
		"empty":          {"", "want <namespace>/<service>/<port>/<track>"},
		"too few parts":  {"shop/checkout/9090", "want <namespace>/<service>/<port>/<track>"},
		"too many parts": {"shop/checkout/9090/stable/x", "want <namespace>/<service>/<port>/<track>"},
		"bad namespace":  {"Shop/checkout/9090/stable", "namespace"},
		"empty service":  {"shop//9090/stable", "service"},
		"port zero":      {"shop/checkout/0/stable", "not a number in 1..65535"},
		"port too big":   {"shop/checkout/65536/stable", "not a number in 1..65535"},
		"port padded":    {"shop/checkout/09090/stable", "not a number in 1..65535"},
		"port signed":    {"shop/checkout/+9090/stable", "not a number in 1..65535"},
		"unknown track":  {"shop/checkout/9090/blue", "not one of stable, canary, sticky"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := ParseClusterName(tc.name)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("ParseClusterName(%q) error = %v, want one containing %q", tc.name, err, tc.wantErr)
			}
		})
	}
}

func TestLocalitySubZone(t *testing.T) {
	for _, tc := range []struct {
		track    Track
		revision string
		subZone  string
	}{
		{TrackStable, "", "stable"},
		{TrackCanary, "", "canary"},
		{TrackCanary, "5d8f7c9b4", "canary/5d8f7c9b4"},
		{TrackStable, "v1.2_a-b", "stable/v1.2_a-b"},
	} {
		if got := LocalitySubZone(tc.track, tc.revision); got != tc.subZone {
			t.Errorf("LocalitySubZone(%q, %q) = %q, want %q", tc.track, tc.revision, got, tc.subZone)
		}
		track, rev, err := ParseLocalitySubZone(tc.subZone)
		if err != nil || track != tc.track || rev != tc.revision {
			t.Errorf("ParseLocalitySubZone(%q) = %q, %q, %v; want %q, %q", tc.subZone, track, rev, err, tc.track, tc.revision)
		}
	}
	for _, bad := range []string{"", "sticky", "Stable", "zone-a", "canary/", "canary/a/b", "stable/-x", "canary/" + strings.Repeat("a", 64)} {
		if _, _, err := ParseLocalitySubZone(bad); err == nil {
			t.Errorf("ParseLocalitySubZone(%q) succeeded, want an error", bad)
		}
	}
}

// FuzzParseLocalitySubZone checks that every sub-zone accepted is exactly
// the one LocalitySubZone writes for what it parsed.
func FuzzParseLocalitySubZone(f *testing.F) {
	f.Add("canary/abc")
	f.Add("stable")
	f.Add("sticky/x")
	f.Fuzz(func(t *testing.T, s string) {
		track, rev, err := ParseLocalitySubZone(s)
		if err != nil {
			return
		}
		if back := LocalitySubZone(track, rev); back != s {
			t.Fatalf("ParseLocalitySubZone(%q) = %q, %q; LocalitySubZone gives %q", s, track, rev, back)
		}
	})
}

// FuzzParseClusterName checks that parsing never panics and that every name
// it accepts is exactly the name ClusterName would give.
func FuzzParseClusterName(f *testing.F) {
	f.Add("shop/checkout/9090/stable")
	f.Add("a/b/1/sticky")
	f.Add("//0/")
	f.Fuzz(func(t *testing.T, name string) {
		id, err := ParseClusterName(name)
		if err != nil {
			return
		}
		if got := id.Name(); got != name {
			t.Fatalf("ParseClusterName(%q) = %+v, which names %q", name, id, got)
		}
	})
}
