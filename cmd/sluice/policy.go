package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/policies"
	"github.com/sluice-dev/sluice/webhook"
)

func newPolicyCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Work with DeploymentPolicies",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newPolicyTestCommand())
	return cmd
}

// policyTestOptions are the flags of `sluice policy test`.
type policyTestOptions struct {
	policyFiles     []string
	namespaceLabels map[string]string
	output          string
	now             string
}

func newPolicyTestCommand() *cobra.Command {
	o := policyTestOptions{}
	cmd := &cobra.Command{
		Use:   "test -p POLICIES.yaml... MANIFESTS.yaml...",
		Short: "Evaluate DeploymentPolicies against manifests offline, as admission would",
		Long: `Evaluate DeploymentPolicies against the Deployments in manifests, offline, exactly as
Sluice's admission webhooks would on CREATE: Sluice's labels are injected first, then every policy
selecting the Deployment's namespace is applied in its mode.

Namespace labels come from Namespace objects in the manifests, else from --namespace-labels.
The exit status is non-zero when any Deployment would be denied (an Enforce violation or a
malformed sluice.dev annotation); Warn and Audit violations are reported but do not fail.
Use --now to check freeze windows at a given instant.`,
		Example: `  sluice policy test -p platform/policies.yaml deploy/*.yaml
  sluice policy test -p policies.yaml --namespace-labels sluice.dev/team=payments,env=prod app.yaml -o json
  sluice policy test -p policies.yaml --now 2026-12-24T10:00:00+01:00 app.yaml`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPolicyTest(cmd.OutOrStdout(), o, args)
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&o.policyFiles, "policies", "p", nil, "file of DeploymentPolicies (multi-document YAML); repeatable")
	f.StringToStringVar(&o.namespaceLabels, "namespace-labels", nil, "labels of namespaces not defined in the manifests, e.g. sluice.dev/team=payments,env=prod")
	f.StringVarP(&o.output, "output", "o", "text", "output format: text or json")
	f.StringVar(&o.now, "now", "", "evaluate at this instant (RFC 3339, e.g. 2026-12-24T10:00:00Z) instead of the current time")
	if err := cmd.MarkFlagRequired("policies"); err != nil {
		panic(err) // the flag is defined just above
	}
	return cmd
}

// PolicyTestReport is the -o json output of `sluice policy test`.
type PolicyTestReport struct {
	// Now is the instant the policies were evaluated at.
	Now time.Time `json:"now"`
	// Policies are the names of the policies read.
	Policies []string `json:"policies"`
	// Deployments are the results, in file and document order.
	Deployments []DeploymentReport `json:"deployments"`
	// Denied counts the Deployments admission would refuse.
	Denied int `json:"denied"`
}

// DeploymentReport is one Deployment's result.
type DeploymentReport struct {
	File       string            `json:"file"`
	Namespace  string            `json:"namespace"`
	Name       string            `json:"name"`
	Denied     bool              `json:"denied"`
	Errors     []FieldProblem    `json:"errors,omitempty"`
	Violations []ViolationReport `json:"violations,omitempty"`
	Exempted   []ViolationReport `json:"exempted,omitempty"`
	Bypassed   []ViolationReport `json:"bypassed,omitempty"`
	Warnings   []string          `json:"warnings,omitempty"`
	Policies   []string          `json:"policies"`
}

// FieldProblem is a reason to deny that is not a policy violation.
type FieldProblem struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// ViolationReport is one broken rule.
type ViolationReport struct {
	Policy  string `json:"policy"`
	Rule    string `json:"rule"`
	Mode    string `json:"mode"`
	Field   string `json:"field"`
	Message string `json:"message"`
	// Reason is the exception's reason, for exempted violations.
	Reason string `json:"reason,omitempty"`
}

// errPolicyDenied is returned when admission would deny something, after the
// report has been written.
var errPolicyDenied = errors.New("denied by Enforce policies")

func runPolicyTest(out io.Writer, o policyTestOptions, manifests []string) error {
	if o.output != "text" && o.output != "json" {
		return fmt.Errorf("--output %q: want text or json", o.output)
	}
	now := time.Now()
	if o.now != "" {
		t, err := time.Parse(time.RFC3339, o.now)
		if err != nil {
			return fmt.Errorf("--now %q: want RFC 3339, e.g. 2026-12-24T10:00:00Z: %w", o.now, err)
		}
		now = t
	}
	store := webhook.NewPolicyStore()
	var names []string
	for _, file := range o.policyFiles {
		pols, err := readPolicies(file)
		if err != nil {
			return err
		}
		for _, p := range pols {
			if _, err := policies.Compile(p); err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
			store.Upsert(p)
			names = append(names, p.Name)
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		return fmt.Errorf("no DeploymentPolicy in %s", strings.Join(o.policyFiles, ", "))
	}
	objs, err := readManifests(manifests)
	if err != nil {
		return err
	}
	report := PolicyTestReport{Now: now, Policies: names}
	snap := store.Snapshot()
	for _, d := range objs.deployments {
		ns := objs.namespace(d.obj.Namespace, o.namespaceLabels)
		dr, err := evaluateOffline(snap, d.obj, ns, now)
		if err != nil {
			return fmt.Errorf("%s: %w", d.file, err)
		}
		dr.File = d.file
		if dr.Denied {
			report.Denied++
		}
		report.Deployments = append(report.Deployments, dr)
	}
	if o.output == "json" {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(report); err != nil {
			return fmt.Errorf("write report: %w", err)
		}
	} else if err := writePolicyText(out, report); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if report.Denied > 0 {
		return fmt.Errorf("%d of %d Deployment(s) %w", report.Denied, len(report.Deployments), errPolicyDenied)
	}
	return nil
}

// evaluateOffline admits d as a CREATE: the mutating webhook's labels first,
// then the policies.
func evaluateOffline(snap *webhook.PolicySnapshot, d *appsv1.Deployment, ns *corev1.Namespace, now time.Time) (DeploymentReport, error) {
	m, err := webhook.Mutate(webhook.MutationInput{
		Operation: admissionv1.Create, Deployment: d,
		Team: ns.Labels[v1alpha1.LabelTeam], InjectLabels: snap.InjectLabels(ns.Labels),
	})
	if err != nil {
		return DeploymentReport{}, err
	}
	admitted, err := applyLabelPatch(d, m.Ops)
	if err != nil {
		return DeploymentReport{}, err
	}
	r := policies.Evaluate(snap.Compiled, policies.Input{Operation: admissionv1.Create, Deployment: admitted, Namespace: ns}, now)
	// A broken Enforce policy denies what it selects, as admission does.
	broken, unapplied := snap.Unapplied(ns.Labels)
	dr := DeploymentReport{Namespace: d.Namespace, Name: d.Name, Denied: r.Denied() || len(broken) > 0, Policies: r.Policies,
		// Warn violations are listed as violations; the other warnings
		// admission would return are conflicts and unapplied policies.
		Warnings: append(append([]string(nil), r.Notes...), unapplied...)}
	for _, e := range append(r.Errors, broken...) {
		dr.Errors = append(dr.Errors, FieldProblem{Field: e.Field, Message: e.ErrorBody()})
	}
	for _, v := range r.Violations {
		dr.Violations = append(dr.Violations, violationReport(v, ""))
	}
	for _, v := range r.Exempted {
		dr.Exempted = append(dr.Exempted, violationReport(v.Violation, v.Reason))
	}
	for _, v := range r.Bypassed {
		dr.Bypassed = append(dr.Bypassed, violationReport(v, r.BypassReason))
	}
	if dr.Policies == nil {
		dr.Policies = []string{}
	}
	return dr, nil
}

func violationReport(v policies.Violation, reason string) ViolationReport {
	return ViolationReport{Policy: v.Policy, Rule: v.Rule, Mode: string(v.Mode), Field: v.Field.String(), Message: v.Message, Reason: reason}
}

// applyLabelPatch applies the mutating webhook's patch to a copy of d. The
// patch only adds, replaces and removes map members, so applying it to the
// typed object is exact.
func applyLabelPatch(d *appsv1.Deployment, ops []webhook.PatchOp) (*appsv1.Deployment, error) {
	raw, err := json.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("encode Deployment %s: %w", d.Name, err)
	}
	patch, err := webhook.MarshalPatch(ops)
	if err != nil {
		return nil, err
	}
	if patch != nil {
		if raw, err = webhook.ApplyPatch(raw, patch); err != nil {
			return nil, fmt.Errorf("apply Sluice's labels to Deployment %s: %w", d.Name, err)
		}
	}
	out := &appsv1.Deployment{}
	if err := json.Unmarshal(raw, out); err != nil {
		return nil, fmt.Errorf("decode Deployment %s: %w", d.Name, err)
	}
	return out, nil
}

func writePolicyText(out io.Writer, r PolicyTestReport) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Evaluated %d Deployment(s) against %d policies (%s) at %s\n\n",
		len(r.Deployments), len(r.Policies), strings.Join(r.Policies, ", "), r.Now.Format(time.RFC3339))
	for _, d := range r.Deployments {
		verdict := "ADMITTED"
		switch {
		case d.Denied:
			verdict = "DENIED"
		case len(d.Warnings) > 0 || len(d.Violations) > 0:
			verdict = "ADMITTED with findings"
		}
		fmt.Fprintf(&b, "%s %s/%s (%s)\n", verdict, d.Namespace, d.Name, d.File)
		for _, e := range d.Errors {
			fmt.Fprintf(&b, "  error    %s: %s\n", e.Field, e.Message)
		}
		for _, v := range d.Violations {
			fmt.Fprintf(&b, "  %-8s %s: %s (policy %s, rule %s)\n", strings.ToLower(v.Mode), v.Field, v.Message, v.Policy, v.Rule)
		}
		for _, v := range d.Bypassed {
			fmt.Fprintf(&b, "  bypass   %s: %s (policy %s, rule %s; bypass reason %q)\n", v.Field, v.Message, v.Policy, v.Rule, v.Reason)
		}
		for _, v := range d.Exempted {
			fmt.Fprintf(&b, "  exempt   %s: %s (policy %s, rule %s; exception: %s)\n", v.Field, v.Message, v.Policy, v.Rule, v.Reason)
		}
		for _, w := range d.Warnings {
			fmt.Fprintf(&b, "  warning  %s\n", w)
		}
	}
	fmt.Fprintf(&b, "\n%d denied, %d admitted\n", r.Denied, len(r.Deployments)-r.Denied)
	_, err := io.WriteString(out, b.String())
	return err
}

// manifestSet is what the manifests hold that policy evaluation needs.
type manifestSet struct {
	deployments []fileDeployment
	namespaces  map[string]*corev1.Namespace
}

type fileDeployment struct {
	file string
	obj  *appsv1.Deployment
}

// namespace returns the named Namespace from the manifests, else one with
// the flag's labels; both carry kubernetes.io/metadata.name as the API
// server sets it.
func (s *manifestSet) namespace(name string, flagLabels map[string]string) *corev1.Namespace {
	ns, ok := s.namespaces[name]
	if !ok {
		ns = &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}}}
		for k, v := range flagLabels {
			ns.Labels[k] = v
		}
	} else {
		ns = ns.DeepCopy()
		if ns.Labels == nil {
			ns.Labels = map[string]string{}
		}
	}
	ns.Labels[corev1.LabelMetadataName] = name
	return ns
}

// readPolicies reads every document of file as a DeploymentPolicy, strictly.
func readPolicies(file string) ([]*v1alpha1.DeploymentPolicy, error) {
	docs, err := yamlDocuments(file)
	if err != nil {
		return nil, err
	}
	var out []*v1alpha1.DeploymentPolicy
	for i, doc := range docs {
		tm, err := typeMeta(doc)
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", file, i+1, err)
		}
		if tm.APIVersion != v1alpha1.SchemeGroupVersion.String() || tm.Kind != "DeploymentPolicy" {
			return nil, fmt.Errorf("%s: document %d is %s %s, want %s DeploymentPolicy", file, i+1, tm.APIVersion, tm.Kind, v1alpha1.SchemeGroupVersion)
		}
		p := &v1alpha1.DeploymentPolicy{}
		if err := yaml.UnmarshalStrict(doc, p); err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", file, i+1, err)
		}
		if p.Name == "" {
			return nil, fmt.Errorf("%s: document %d: DeploymentPolicy has no metadata.name", file, i+1)
		}
		if p.Spec.Mode == "" {
			p.Spec.Mode = v1alpha1.ModeEnforce // the CRD's default
		}
		p.UID = types.UID("file:" + p.Name)
		out = append(out, p)
	}
	return out, nil
}

// readManifests collects the Deployments and Namespaces of the files; other
// kinds are skipped.
func readManifests(files []string) (*manifestSet, error) {
	s := &manifestSet{namespaces: map[string]*corev1.Namespace{}}
	for _, file := range files {
		docs, err := yamlDocuments(file)
		if err != nil {
			return nil, err
		}
		for i, doc := range docs {
			tm, err := typeMeta(doc)
			if err != nil {
				return nil, fmt.Errorf("%s: document %d: %w", file, i+1, err)
			}
			switch {
			case tm.APIVersion == "apps/v1" && tm.Kind == "Deployment":
				d := &appsv1.Deployment{}
				if err := yaml.UnmarshalStrict(doc, d); err != nil {
					return nil, fmt.Errorf("%s: document %d: %w", file, i+1, err)
				}
				if d.Namespace == "" {
					d.Namespace = metav1.NamespaceDefault
				}
				s.deployments = append(s.deployments, fileDeployment{file: file, obj: d})
			case tm.APIVersion == "v1" && tm.Kind == "Namespace":
				ns := &corev1.Namespace{}
				if err := yaml.UnmarshalStrict(doc, ns); err != nil {
					return nil, fmt.Errorf("%s: document %d: %w", file, i+1, err)
				}
				s.namespaces[ns.Name] = ns
			}
		}
	}
	if len(s.deployments) == 0 {
		return nil, fmt.Errorf("no apps/v1 Deployment in %s", strings.Join(files, ", "))
	}
	return s, nil
}

func typeMeta(doc []byte) (metav1.TypeMeta, error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return tm, err
	}
	if tm.APIVersion == "" || tm.Kind == "" {
		return tm, errors.New("apiVersion and kind are required")
	}
	return tm, nil
}

// yamlDocuments splits a multi-document YAML file, skipping empty documents.
func yamlDocuments(file string) ([][]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := utilyaml.NewYAMLReader(bufio.NewReader(f))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", file, err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) > 0 {
			docs = append(docs, doc)
		}
	}
}

// stripComments drops whole-line YAML comments, to tell empty documents.
func stripComments(doc []byte) []byte {
	var b bytes.Buffer
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' && !bytes.Equal(t, []byte("---")) {
			b.Write(line)
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}
