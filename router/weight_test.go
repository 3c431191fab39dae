package router

import (
	"math"
	"strings"
	"testing"
)

func TestWeightFromPercent(t *testing.T) {
	tests := map[string]struct {
		in      float64
		want    Weight
		wantErr string
	}{
		"zero":          {in: 0, want: 0},
		"whole":         {in: 25, want: 2500},
		"half percent":  {in: 0.5, want: 50},
		"basis point":   {in: 0.01, want: 1},
		"all":           {in: 100, want: TotalWeight},
		"float noise":   {in: 0.1 + 0.2, want: 30},
		"too fine":      {in: 0.005, wantErr: "finer than 0.01%"},
		"negative":      {in: -1, wantErr: "between 0 and 100"},
		"above hundred": {in: 100.5, wantErr: "between 0 and 100"},
		"nan":           {in: math.NaN(), wantErr: "between 0 and 100"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := WeightFromPercent(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("WeightFromPercent(%v) error = %v, want one containing %q", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("WeightFromPercent(%v): %v", tc.in, err)
			}
			if got != tc.want {
				t.Errorf("WeightFromPercent(%v) = %d, want %d", tc.in, got, tc.want)
			}
		})
	}
}

func TestWeightString(t *testing.T) {
	for w, want := range map[Weight]string{0: "0%", 50: "0.5%", 2500: "25%", 1: "0.01%", TotalWeight: "100%"} {
		if got := w.String(); got != want {
			t.Errorf("Weight(%d).String() = %q, want %q", w, got, want)
		}
	}
}
