package translate

import "testing"

func TestFormFor(t *testing.T) {
	cases := map[string]struct {
		client Client
		want   Form
	}{
		"python grpcio 1.51 (C-core)": {Client{"gRPC C-core linux Python", "C-core 29.0.0 Python 1.51.1"}, FormLegacyNoRing},
		"C-core without version":      {Client{"gRPC C-core", ""}, FormLegacyNoRing},
		"grpc-js-xds 1.14":            {Client{"gRPC Node Pure JS", "1.14.1"}, FormLegacyNoRing},
		"grpc-go 1.55":                {Client{"gRPC Go", "1.55.0"}, FormLegacyNoRing},
		"grpc-go 1.56":                {Client{"gRPC Go", "1.56.3"}, FormCurrent},
		"grpc-go 1.85 dev":            {Client{"gRPC Go", "1.85.0-dev"}, FormCurrent},
		"grpc-go garbage version":     {Client{"gRPC Go", "x"}, FormLegacyNoRing},
		"grpc-java 1.52":              {Client{"gRPC Java", "1.52.1"}, FormLegacy},
		"grpc-java 1.53":              {Client{"gRPC Java", "1.53.0"}, FormCurrent},
		"envoy 1.21":                  {Client{"envoy", "1.21.6"}, FormLegacy},
		"envoy 1.23":                  {Client{"envoy", "1.23.12"}, FormLegacy},
		"envoy 1.24":                  {Client{"envoy", "1.24.0"}, FormCurrent},
		"envoy 1.36":                  {Client{"envoy", "1.36.0"}, FormCurrent},
		"anonymous":                   {Client{}, FormCurrent},
		"unknown implementation":      {Client{"my-xds", "9.9"}, FormCurrent},
		"two-digit minor below 1.56":  {Client{"gRPC Go", "1.9.0"}, FormLegacyNoRing},
		"major above one, low minor":  {Client{"gRPC Go", "2.1.0"}, FormCurrent},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got, why := FormFor(tc.client)
			if got != tc.want {
				t.Errorf("FormFor(%v) = %s (%s), want %s", tc.client, got, why, tc.want)
			}
			if why == "" {
				t.Error("no reason given")
			}
		})
	}
}
