package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestPolicyTest(t *testing.T) {
	tests := map[string]struct {
		args       []string
		wantDenied bool
		wantErr    string
		wantOut    []string
		notOut     []string
	}{
		"violations in every mode, malformed annotation, namespace from the manifests": {
			args:       []string{"-p", "testdata/policy/policies.yaml", "testdata/policy/bad-app.yaml"},
			wantDenied: true,
			wantOut: []string{
				"DENIED shop/checkout (testdata/policy/bad-app.yaml)",
				"error    metadata.annotations[sluice.dev/steps]",
				"enforce  metadata.labels[owner]: ", "(policy baseline, rule requiredLabels)",
				"spec.template.spec.containers[0].image", "rule disallowLatestTag",
				"run at least 2 replicas (policy baseline, rule two-replicas)",
				"warn     spec.template.spec.containers[0].readinessProbe",
				"1 denied, 0 admitted",
			},
		},
		"a compliant Deployment, team label from the flag": {
			args:    []string{"-p", "testdata/policy/policies.yaml", "--namespace-labels", "sluice.dev/team=payments", "testdata/policy/good-app.yaml"},
			wantOut: []string{"ADMITTED shop/checkout", "baseline, hygiene", "0 denied, 1 admitted"},
			notOut:  []string{"enforce", "warn "},
		},
		"policies that select other namespaces do not apply": {
			args:    []string{"-p", "testdata/policy/policies.yaml", "testdata/policy/good-app.yaml"},
			wantOut: []string{"ADMITTED shop/checkout", "0 denied"},
		},
		"inside a freeze window": {
			args:       []string{"-p", "testdata/policy/freeze.yaml", "--now", "2026-12-24T10:00:00+01:00", "testdata/policy/good-app.yaml"},
			wantDenied: true,
			wantOut:    []string{"DENIED", "year-end freeze"},
		},
		"after the freeze window": {
			args:    []string{"-p", "testdata/policy/freeze.yaml", "--now", "2027-01-04T08:00:00+01:00", "testdata/policy/good-app.yaml"},
			wantOut: []string{"ADMITTED shop/checkout"},
		},
		"a policy that does not compile": {
			args:    []string{"-p", "testdata/policy/broken-policy.yaml", "testdata/policy/good-app.yaml"},
			wantErr: "spec.rules.cel[0].expression",
		},
		"a policy file with another kind": {
			args:    []string{"-p", "testdata/policy/not-a-policy.yaml", "testdata/policy/good-app.yaml"},
			wantErr: "document 1 is v1 ConfigMap, want sluice.dev/v1alpha1 DeploymentPolicy",
		},
		"a misspelled field in a manifest": {
			args:    []string{"-p", "testdata/policy/policies.yaml", "testdata/policy/typo.yaml"},
			wantErr: `unknown field "readinesProbe"`,
		},
		"no Deployment": {
			args:    []string{"-p", "testdata/policy/policies.yaml", "testdata/policy/not-a-policy.yaml"},
			wantErr: "no apps/v1 Deployment",
		},
		"bad --now": {
			args:    []string{"-p", "testdata/policy/freeze.yaml", "--now", "tomorrow", "testdata/policy/good-app.yaml"},
			wantErr: "--now \"tomorrow\": want RFC 3339",
		},
		"bad --output": {
			args:    []string{"-p", "testdata/policy/freeze.yaml", "-o", "yaml", "testdata/policy/good-app.yaml"},
			wantErr: "want text or json",
		},
		"missing file": {
			args:    []string{"-p", "testdata/policy/none.yaml", "testdata/policy/good-app.yaml"},
			wantErr: "none.yaml",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			out, err := runPolicyCLI(tc.args...)
			switch {
			case tc.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			case tc.wantDenied:
				if !errors.Is(err, errPolicyDenied) {
					t.Fatalf("error %v, want a denial", err)
				}
			case err != nil:
				t.Fatalf("error %v\n%s", err, out)
			}
			for _, s := range tc.wantOut {
				if !strings.Contains(out, s) {
					t.Errorf("output lacks %q:\n%s", s, out)
				}
			}
			for _, s := range tc.notOut {
				if strings.Contains(out, s) {
					t.Errorf("output has %q:\n%s", s, out)
				}
			}
		})
	}
}

func TestPolicyTestJSON(t *testing.T) {
	out, err := runPolicyCLI("-p", "testdata/policy/policies.yaml", "-o", "json", "--now", "2026-11-25T12:00:00Z", "testdata/policy/bad-app.yaml")
	if !errors.Is(err, errPolicyDenied) {
		t.Fatalf("error %v, want a denial", err)
	}
	var r PolicyTestReport
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		t.Fatalf("decode %s: %v", out, err)
	}
	if r.Denied != 1 || len(r.Deployments) != 1 || len(r.Policies) != 2 {
		t.Fatalf("report %+v", r)
	}
	d := r.Deployments[0]
	rules := map[string]string{}
	for _, v := range d.Violations {
		rules[v.Rule] = v.Mode
	}
	for rule, mode := range map[string]string{"requiredLabels": "Enforce", "disallowLatestTag": "Enforce", "two-replicas": "Enforce", "requireReadinessProbe": "Warn"} {
		if rules[rule] != mode {
			t.Errorf("rule %s: mode %q, want %q (violations %+v)", rule, rules[rule], mode, d.Violations)
		}
	}
	if len(d.Errors) != 1 || d.Errors[0].Field != "metadata.annotations[sluice.dev/steps]" {
		t.Errorf("errors %+v", d.Errors)
	}
}

func runPolicyCLI(args ...string) (string, error) {
	cmd := newPolicyCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(append([]string{"test"}, args...))
	cmd.SilenceUsage = true
	cmd.SilenceErrors = true
	err := cmd.Execute()
	return out.String(), err
}
