package v1alpha1

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func i32(v int32) *int32 { return &v }

func TestWithDefaults(t *testing.T) {
	team := Delivery{
		Steps:        []BasisPoints{1000, 5000},
		MaxErrorRate: bp(200),
		Analysis:     &Analysis{MinSamples: 500},
	}
	ann := Delivery{Mode: ModeCanary, MaxErrorRate: bp(50), Cohort: &Cohort{Source: SourceHeader, Name: "x-b", Match: MatchPresent}}

	got := ann.WithDefaults(team).WithDefaults(DefaultDelivery())
	want := DefaultDelivery()
	want.Mode = ModeCanary
	want.Steps = []BasisPoints{1000, 5000}
	want.MaxErrorRate = bp(50)
	want.Cohort = ann.Cohort
	want.Analysis.MinSamples = 500
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("WithDefaults (-want +got):\n%s", diff)
	}
	got.Steps[0] = 1
	got.Analysis.MinSamples = 1
	if team.Steps[0] == 1 || team.Analysis.MinSamples == 1 {
		t.Error("WithDefaults shares memory with its inputs")
	}
}

func TestParseRolloutDefaults(t *testing.T) {
	fld := field.NewPath("spec", "rolloutDefaults")
	cases := map[string]struct {
		in         *RolloutDefaults
		want       Delivery
		wantFields []string
	}{
		"nil": {in: nil, want: Delivery{}},
		"everything": {
			in: &RolloutDefaults{
				Steps: "2,10,50", StepInterval: dur(time.Minute), MaxErrorRate: "0.5%",
				MaxLatencyP99: dur(time.Second),
				Analysis: &AnalysisDefaults{Confidence: "99%", MinSamples: i32(10), NoData: NoDataFail,
					CriticalErrorRate: "0.3",
					Queries:           []MetricQuery{{Name: "p95", Query: "q", Threshold: "0.25", Comparison: ComparisonBelow}}},
			},
			want: Delivery{
				Steps: []BasisPoints{200, 1000, 5000}, StepInterval: dur(time.Minute), MaxErrorRate: bp(50),
				MaxLatencyP99: dur(time.Second),
				Analysis: &Analysis{Confidence: 9900, MinSamples: 10, NoData: NoDataFail,
					CriticalErrorRate: 3000,
					Queries:           []MetricQuery{{Name: "p95", Query: "q", Threshold: "0.25", Comparison: ComparisonBelow}}},
			},
		},
		"bad values": {
			in: &RolloutDefaults{
				Steps: "50,10", StepInterval: dur(time.Millisecond), MaxErrorRate: "lots",
				MaxLatencyP99: dur(0),
				Analysis: &AnalysisDefaults{Confidence: "100%", MinSamples: i32(-1), NoData: "Maybe",
					CriticalErrorRate: "2",
					Queries: []MetricQuery{
						{Name: "a", Query: "q", Threshold: "x"},
						{Name: "a", Query: "", Threshold: "1", Comparison: "Sideways"},
					}},
			},
			wantFields: []string{
				"spec.rolloutDefaults.steps",
				"spec.rolloutDefaults.stepInterval",
				"spec.rolloutDefaults.maxErrorRate",
				"spec.rolloutDefaults.maxLatencyP99",
				"spec.rolloutDefaults.analysis.confidence",
				"spec.rolloutDefaults.analysis.minSamples",
				"spec.rolloutDefaults.analysis.noData",
				"spec.rolloutDefaults.analysis.criticalErrorRate",
				"spec.rolloutDefaults.analysis.queries[0].threshold",
				"spec.rolloutDefaults.analysis.queries[1].name",
				"spec.rolloutDefaults.analysis.queries[1].query",
				"spec.rolloutDefaults.analysis.queries[1].comparison",
			},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got, errs := ParseRolloutDefaults(tc.in, fld)
			var fields []string
			for _, e := range errs {
				fields = append(fields, e.Field)
			}
			if diff := cmp.Diff(tc.wantFields, fields); diff != "" {
				t.Fatalf("error fields (-want +got):\n%s\n%v", diff, errs.ToAggregate())
			}
			if len(errs) == 0 {
				if diff := cmp.Diff(tc.want, got); diff != "" {
					t.Errorf("ParseRolloutDefaults (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func TestThresholdValue(t *testing.T) {
	for in, ok := range map[string]bool{"0.5": true, "-3": true, "1e3": true, "NaN": false, "Inf": false, "": false, "1,5": false} {
		_, err := MetricQuery{Threshold: in}.ThresholdValue()
		if (err == nil) != ok {
			t.Errorf("ThresholdValue(%q) error = %v, want ok %v", in, err, ok)
		}
		if err != nil && !strings.Contains(err.Error(), `e.g. "0.5"`) {
			t.Errorf("error %q lacks an example", err)
		}
	}
}
