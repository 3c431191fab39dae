package v1alpha1

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/sluice-dev/sluice/router"
)

var annotationsPath = field.NewPath("metadata", "annotations")

func bp(v BasisPoints) *BasisPoints { return &v }

func dur(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }

func TestParseDeliveryAccepts(t *testing.T) {
	cases := map[string]struct {
		in   map[string]string
		want Delivery
	}{
		"no annotations": {in: nil, want: Delivery{}},
		"unrelated annotations": {
			in: map[string]string{"example.com/x": "y", AnnotationEmergencyBypass: "incident 42",
				"sluice.dev/pending-revision": "abc", "sluice.dev/team": "payments"},
			want: Delivery{},
		},
		"canary with every knob": {
			in: map[string]string{
				AnnotationRollout:       "canary",
				AnnotationService:       "checkout",
				AnnotationSteps:         "1,5,25,50",
				AnnotationStepInterval:  "30s",
				AnnotationMaxErrorRate:  "1%",
				AnnotationMaxLatencyP99: "300ms",
				AnnotationSticky:        "header:x-user-id",
			},
			want: Delivery{
				Mode: ModeCanary, Service: "checkout",
				Steps:         []BasisPoints{100, 500, 2500, 5000},
				StepInterval:  dur(30 * time.Second),
				MaxErrorRate:  bp(100),
				MaxLatencyP99: dur(300 * time.Millisecond),
				Sticky:        &Sticky{Source: SourceHeader, Name: "x-user-id"},
			},
		},
		"decimal steps with spaces and percent signs": {
			in:   map[string]string{AnnotationSteps: "0.5, 2.25%, 10,99.99"},
			want: Delivery{Steps: []BasisPoints{50, 225, 1000, 9999}},
		},
		"error rate as fraction": {
			in:   map[string]string{AnnotationMaxErrorRate: "0.005"},
			want: Delivery{MaxErrorRate: bp(50)},
		},
		"error rate zero": {
			in:   map[string]string{AnnotationMaxErrorRate: "0%"},
			want: Delivery{MaxErrorRate: bp(0)},
		},
		"off": {in: map[string]string{AnnotationRollout: "off"}, want: Delivery{Mode: ModeOff}},
		"beta with header cohort": {
			in: map[string]string{AnnotationRollout: "beta", AnnotationCohort: "header:x-cohort=beta"},
			want: Delivery{Mode: ModeBeta,
				Cohort: &Cohort{Source: SourceHeader, Name: "x-cohort", Match: MatchExact, Value: "beta"}},
		},
		"header presence cohort": {
			in:   map[string]string{AnnotationCohort: "header:x-beta"},
			want: Delivery{Cohort: &Cohort{Source: SourceHeader, Name: "x-beta", Match: MatchPresent}},
		},
		"header regex cohort": {
			in:   map[string]string{AnnotationCohort: "header:x-user~^a.*"},
			want: Delivery{Cohort: &Cohort{Source: SourceHeader, Name: "x-user", Match: MatchRegex, Value: "^a.*"}},
		},
		"header value with equals sign": {
			in:   map[string]string{AnnotationCohort: "header:x-token=a=b"},
			want: Delivery{Cohort: &Cohort{Source: SourceHeader, Name: "x-token", Match: MatchExact, Value: "a=b"}},
		},
		"cookie cohort": {
			in:   map[string]string{AnnotationCohort: "cookie:beta=1"},
			want: Delivery{Cohort: &Cohort{Source: SourceCookie, Name: "beta", Match: MatchExact, Value: "1"}},
		},
		"ab with split and cookie sticky": {
			in: map[string]string{AnnotationRollout: "ab", AnnotationSplit: "12.5", AnnotationSticky: "cookie:session"},
			want: Delivery{Mode: ModeAB, Split: bp(1250),
				Sticky: &Sticky{Source: SourceCookie, Name: "session"}},
		},
		"split bounds": {
			in:   map[string]string{AnnotationSplit: "100"},
			want: Delivery{Split: bp(10000)},
		},
		"long step interval": {
			in:   map[string]string{AnnotationStepInterval: "1h30m"},
			want: Delivery{StepInterval: dur(90 * time.Minute)},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got, errs := ParseDelivery(tc.in, annotationsPath)
			if len(errs) > 0 {
				t.Fatalf("unexpected errors: %v", errs.ToAggregate())
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ParseDelivery (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseDeliveryRejects(t *testing.T) {
	cases := map[string]struct {
		in map[string]string
		// wantFields are the field paths of the expected errors, in order.
		wantFields []string
		// wantText must appear in the aggregated message.
		wantText []string
	}{
		"unknown mode": {
			in:         map[string]string{AnnotationRollout: "blue-green"},
			wantFields: []string{"metadata.annotations[sluice.dev/rollout]"},
			wantText:   []string{`"canary"`, `"off"`},
		},
		"service not a DNS label": {
			in:         map[string]string{AnnotationService: "Check_Out"},
			wantFields: []string{"metadata.annotations[sluice.dev/service]"},
			wantText:   []string{`e.g. "checkout"`},
		},
		"steps not increasing": {
			in:         map[string]string{AnnotationSteps: "5,1"},
			wantFields: []string{"metadata.annotations[sluice.dev/steps]"},
			wantText:   []string{"steps must increase", `e.g. "1,5,25,50"`},
		},
		"steps equal": {
			in:         map[string]string{AnnotationSteps: "5,5"},
			wantFields: []string{"metadata.annotations[sluice.dev/steps]"},
		},
		"step of 100": {
			in:         map[string]string{AnnotationSteps: "50,100"},
			wantFields: []string{"metadata.annotations[sluice.dev/steps]"},
			wantText:   []string{"less than 100%"},
		},
		"step of 0": {
			in:         map[string]string{AnnotationSteps: "0,5"},
			wantFields: []string{"metadata.annotations[sluice.dev/steps]"},
		},
		"step too precise": {
			in:         map[string]string{AnnotationSteps: "0.125"},
			wantFields: []string{"metadata.annotations[sluice.dev/steps]"},
			wantText:   []string{"2 decimal places"},
		},
		"empty steps": {
			in:         map[string]string{AnnotationSteps: ""},
			wantFields: []string{"metadata.annotations[sluice.dev/steps]"},
		},
		"empty step": {
			in:         map[string]string{AnnotationSteps: "1,,5"},
			wantFields: []string{"metadata.annotations[sluice.dev/steps]"},
		},
		"negative step": {
			in:         map[string]string{AnnotationSteps: "-1,5"},
			wantFields: []string{"metadata.annotations[sluice.dev/steps]"},
		},
		"too many steps": {
			in:         map[string]string{AnnotationSteps: strings.Repeat("1,", 30) + "2"},
			wantFields: []string{"metadata.annotations[sluice.dev/steps]"},
		},
		"interval not a duration": {
			in:         map[string]string{AnnotationStepInterval: "30"},
			wantFields: []string{"metadata.annotations[sluice.dev/step-interval]"},
			wantText:   []string{`e.g. "30s"`},
		},
		"interval too short": {
			in:         map[string]string{AnnotationStepInterval: "500ms"},
			wantFields: []string{"metadata.annotations[sluice.dev/step-interval]"},
		},
		"error rate above one": {
			in:         map[string]string{AnnotationMaxErrorRate: "1.5"},
			wantFields: []string{"metadata.annotations[sluice.dev/max-error-rate]"},
			wantText:   []string{"% sign"},
		},
		"error rate above 100%": {
			in:         map[string]string{AnnotationMaxErrorRate: "101%"},
			wantFields: []string{"metadata.annotations[sluice.dev/max-error-rate]"},
		},
		"error rate words": {
			in:         map[string]string{AnnotationMaxErrorRate: "one percent"},
			wantFields: []string{"metadata.annotations[sluice.dev/max-error-rate]"},
			wantText:   []string{`"1%" or "0.01"`},
		},
		"latency zero": {
			in:         map[string]string{AnnotationMaxLatencyP99: "0s"},
			wantFields: []string{"metadata.annotations[sluice.dev/max-latency-p99]"},
		},
		"latency garbage": {
			in:         map[string]string{AnnotationMaxLatencyP99: "fast"},
			wantFields: []string{"metadata.annotations[sluice.dev/max-latency-p99]"},
		},
		"cohort without source": {
			in:         map[string]string{AnnotationCohort: "x-cohort=beta"},
			wantFields: []string{"metadata.annotations[sluice.dev/cohort]"},
			wantText:   []string{`"header:x-cohort=beta"`},
		},
		"cohort upper-case header": {
			in:         map[string]string{AnnotationCohort: "header:X-Cohort=beta"},
			wantFields: []string{"metadata.annotations[sluice.dev/cohort]"},
			wantText:   []string{"lower-case", `"x-cohort"`},
		},
		"cohort bad regex": {
			in:         map[string]string{AnnotationCohort: "header:x-user~(("},
			wantFields: []string{"metadata.annotations[sluice.dev/cohort]"},
		},
		"cohort empty header value": {
			in:         map[string]string{AnnotationCohort: "header:x-user="},
			wantFields: []string{"metadata.annotations[sluice.dev/cohort]"},
		},
		"cohort cookie without value": {
			in:         map[string]string{AnnotationCohort: "cookie:beta"},
			wantFields: []string{"metadata.annotations[sluice.dev/cohort]"},
		},
		"cohort cookie bad value": {
			in:         map[string]string{AnnotationCohort: "cookie:beta=a;b"},
			wantFields: []string{"metadata.annotations[sluice.dev/cohort]"},
		},
		"cohort pseudo header": {
			in:         map[string]string{AnnotationCohort: "header::authority=x"},
			wantFields: []string{"metadata.annotations[sluice.dev/cohort]"},
		},
		"sticky with value": {
			in:         map[string]string{AnnotationSticky: "header:x-user-id=1"},
			wantFields: []string{"metadata.annotations[sluice.dev/sticky]"},
			wantText:   []string{`"cookie:session"`},
		},
		"sticky empty cookie": {
			in:         map[string]string{AnnotationSticky: "cookie:"},
			wantFields: []string{"metadata.annotations[sluice.dev/sticky]"},
		},
		"split above 100": {
			in:         map[string]string{AnnotationSplit: "150"},
			wantFields: []string{"metadata.annotations[sluice.dev/split]"},
		},
		"split negative": {
			in:         map[string]string{AnnotationSplit: "-5"},
			wantFields: []string{"metadata.annotations[sluice.dev/split]"},
		},
		"beta without cohort": {
			in:         map[string]string{AnnotationRollout: "beta"},
			wantFields: []string{"metadata.annotations[sluice.dev/cohort]"},
			wantText:   []string{"Required value", "beta needs it"},
		},
		"ab without split or sticky": {
			in: map[string]string{AnnotationRollout: "ab"},
			wantFields: []string{
				"metadata.annotations[sluice.dev/split]",
				"metadata.annotations[sluice.dev/sticky]",
			},
		},
		"ab with malformed split reports it once": {
			in:         map[string]string{AnnotationRollout: "ab", AnnotationSplit: "half", AnnotationSticky: "cookie:s"},
			wantFields: []string{"metadata.annotations[sluice.dev/split]"},
		},
		"misspelled annotation": {
			in:         map[string]string{"sluice.dev/step": "1,5", "sluice.dev/max-error-rat": "1%"},
			wantFields: []string{"metadata.annotations[sluice.dev/max-error-rat]", "metadata.annotations[sluice.dev/step]"},
			wantText:   []string{"did you mean sluice.dev/steps?", "did you mean sluice.dev/max-error-rate?"},
		},
		"every error at once": {
			in: map[string]string{
				AnnotationRollout: "x", AnnotationSteps: "x", AnnotationStepInterval: "x",
				AnnotationMaxErrorRate: "x", AnnotationMaxLatencyP99: "x", AnnotationCohort: "x",
				AnnotationSticky: "x", AnnotationSplit: "x", AnnotationService: "X",
			},
			wantFields: []string{
				"metadata.annotations[sluice.dev/rollout]",
				"metadata.annotations[sluice.dev/service]",
				"metadata.annotations[sluice.dev/steps]",
				"metadata.annotations[sluice.dev/step-interval]",
				"metadata.annotations[sluice.dev/max-error-rate]",
				"metadata.annotations[sluice.dev/max-latency-p99]",
				"metadata.annotations[sluice.dev/cohort]",
				"metadata.annotations[sluice.dev/sticky]",
				"metadata.annotations[sluice.dev/split]",
			},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, errs := ParseDelivery(tc.in, annotationsPath)
			var fields []string
			for _, e := range errs {
				fields = append(fields, e.Field)
			}
			if diff := cmp.Diff(tc.wantFields, fields); diff != "" {
				t.Fatalf("error fields (-want +got):\n%s\nerrors: %v", diff, errs.ToAggregate())
			}
			msg := errs.ToAggregate().Error()
			for _, want := range tc.wantText {
				if !strings.Contains(msg, want) {
					t.Errorf("message %q lacks %q", msg, want)
				}
			}
		})
	}
}

func TestParseRate(t *testing.T) {
	cases := map[string]struct {
		in      string
		want    BasisPoints
		wantErr bool
	}{
		"percent":           {in: "1%", want: 100},
		"decimal percent":   {in: "0.25%", want: 25},
		"fraction":          {in: "0.01", want: 100},
		"one":               {in: "1", want: 10000},
		"zero":              {in: "0", want: 0},
		"trailing zeros":    {in: "0.010000", want: 100},
		"too precise":       {in: "0.00001", wantErr: true},
		"exponent":          {in: "1e-2", wantErr: true},
		"sign":              {in: "+0.1", wantErr: true},
		"space":             {in: " 1%", wantErr: true},
		"dot only":          {in: ".", wantErr: true},
		"trailing dot":      {in: "1.", wantErr: true},
		"huge":              {in: "99999999999999999999%", wantErr: true},
		"double percent":    {in: "1%%", wantErr: true},
		"empty":             {in: "", wantErr: true},
		"leading dot works": {in: ".5", want: 5000},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := ParseRate(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("ParseRate(%q) error = %v, want error %v", tc.in, err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("ParseRate(%q) = %d, want %d", tc.in, got, tc.want)
			}
		})
	}
}

func TestBasisPointsString(t *testing.T) {
	for in, want := range map[BasisPoints]string{0: "0%", 50: "0.5%", 125: "1.25%", 2500: "25%", 10000: "100%"} {
		if got := in.String(); got != want {
			t.Errorf("BasisPoints(%d).String() = %q, want %q", in, got, want)
		}
	}
}

// FuzzParseDelivery checks that no annotation value panics the parser, that
// every error names a sluice.dev annotation and that accepted values are in
// range.
func FuzzParseDelivery(f *testing.F) {
	seeds := []string{"1,5,25,50", "0.5", "30s", "1%", "0.01", "header:x-cohort=beta", "header:x-beta",
		"header:x-user~^a.*", "cookie:beta=1", "cookie:session", "50", "canary", "", ",", "header:", "~", "1e9"}
	for i, s := range seeds {
		f.Add(DeliveryAnnotations[i%len(DeliveryAnnotations)], s, "ab")
	}
	f.Fuzz(func(t *testing.T, key, value, mode string) {
		in := map[string]string{key: value, AnnotationRollout: mode}
		for _, k := range DeliveryAnnotations {
			if k != AnnotationRollout {
				in[k] = value
			}
		}
		for _, ann := range []map[string]string{in, {key: value}} {
			d, errs := ParseDelivery(ann, annotationsPath)
			for _, e := range errs {
				if !strings.HasPrefix(e.Field, "metadata.annotations[sluice.dev/") {
					t.Fatalf("error outside the annotations: %v", e)
				}
				if !utf8.ValidString(e.Detail) && utf8.ValidString(value) {
					t.Fatalf("invalid UTF-8 in detail: %q", e.Detail)
				}
			}
			for i, s := range d.Steps {
				if s <= 0 || s >= TotalBasisPoints || (i > 0 && s <= d.Steps[i-1]) {
					t.Fatalf("accepted bad steps %v from %q", d.Steps, value)
				}
			}
			if d.Split != nil && (*d.Split < 0 || *d.Split > TotalBasisPoints) {
				t.Fatalf("accepted split %d from %q", *d.Split, value)
			}
			if d.MaxErrorRate != nil && (*d.MaxErrorRate < 0 || *d.MaxErrorRate > TotalBasisPoints) {
				t.Fatalf("accepted error rate %d from %q", *d.MaxErrorRate, value)
			}
			if d.StepInterval != nil && d.StepInterval.Duration < MinStepInterval {
				t.Fatalf("accepted interval %s from %q", d.StepInterval.Duration, value)
			}
		}
	})
}

// TestCohortHeaderNamesAgreeWithTheRouter: every header name the annotation
// parser accepts is one the router can route on, so admission never accepts
// a cohort that traffic then refuses silently.
func TestCohortHeaderNamesAgreeWithTheRouter(t *testing.T) {
	names := []string{"x-cohort", "grpc-foo", "grpc-", "x-sluice-warmup", "X-Cohort", "a.b_c", "", "x y", ":path", "x-user-id"}
	for i := range 300 {
		b := []byte{}
		for j := 0; j <= i%12; j++ {
			const alphabet = "abcxyz-_.grpcGRPC:019 "
			b = append(b, alphabet[(i*7+j*13)%len(alphabet)])
		}
		names = append(names, string(b))
	}
	for _, n := range names {
		parsed := checkHeaderName(n) == nil
		routed := router.CheckHeaderName(n) == nil
		if parsed && !routed {
			t.Errorf("header %q: the annotation parser accepts it, the router refuses it", n)
		}
	}
	for _, n := range []string{"grpc-foo", "x-sluice-warmup"} {
		if checkHeaderName(n) == nil {
			t.Errorf("header %q accepted at admission; the router cannot route on it", n)
		}
	}
}
