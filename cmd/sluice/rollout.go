package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

// rolloutFlags are the connection flags every rollout command shares.
type rolloutFlags struct {
	kubeconfig string
	namespace  string
}

func (f *rolloutFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)")
	cmd.Flags().StringVarP(&f.namespace, "namespace", "n", "", "namespace (default: the kubeconfig context's, else default)")
}

// rolloutClient connects to the cluster and says which namespace and user
// the commands act as.
type rolloutClient struct {
	client.Client
	namespace string
	user      string
}

func (f *rolloutFlags) connect() (*rolloutClient, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = f.kubeconfig
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{})
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig: %w", err)
	}
	ns := f.namespace
	if ns == "" {
		if ns, _, err = cc.Namespace(); err != nil {
			return nil, fmt.Errorf("kubeconfig namespace: %w", err)
		}
	}
	user := os.Getenv("USER")
	if raw, err := cc.RawConfig(); err == nil {
		if ctx, ok := raw.Contexts[raw.CurrentContext]; ok && ctx.AuthInfo != "" {
			user = ctx.AuthInfo
		}
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("connect to the cluster: %w", err)
	}
	return &rolloutClient{Client: c, namespace: ns, user: user}, nil
}

// newRolloutCommands returns status, promote, abort, pause, resume and retry.
func newRolloutCommands() []*cobra.Command {
	return []*cobra.Command{
		newStatusCommand(),
		newRolloutActionCommand("promote", "Promote the canary now, skipping its remaining steps (in beta mode, the first promote starts the weighted steps)", actionPromote),
		newRolloutActionCommand("abort", "Roll the canary back now and record its revision as failed", actionAbort),
		newRolloutActionCommand("pause", "Hold the canary at its current weight (analysis still rolls back on failure)", actionPause),
		newRolloutActionCommand("resume", "Resume a paused rollout; the current step's interval starts again", actionResume),
		newRolloutActionCommand("retry", "Allow a rolled-back revision to be delivered again", actionRetry),
	}
}

func newStatusCommand() *cobra.Command {
	var f rolloutFlags
	var all, watch bool
	cmd := &cobra.Command{
		Use:   "status [name]",
		Short: "Show rollouts: phase, canary weight, step, revisions and latest analysis verdicts",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.connect()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			last := ""
			for {
				list, err := listRollouts(ctx, c, all, args)
				if err != nil {
					return err
				}
				var b strings.Builder
				if err := printRollouts(&b, list, all, time.Now()); err != nil {
					return err
				}
				if out := b.String(); out != last {
					if watch && last != "" {
						fmt.Fprintln(cmd.OutOrStdout())
					}
					fmt.Fprint(cmd.OutOrStdout(), out)
					last = out
				}
				if !watch {
					return nil
				}
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(time.Second):
				}
			}
		},
	}
	f.add(cmd)
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "show rollouts in every namespace")
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "keep printing the table whenever it changes")
	return cmd
}

func listRollouts(ctx context.Context, c *rolloutClient, all bool, args []string) ([]v1alpha1.Rollout, error) {
	if len(args) == 1 {
		var ro v1alpha1.Rollout
		if err := c.Get(ctx, types.NamespacedName{Namespace: c.namespace, Name: args[0]}, &ro); err != nil {
			return nil, fmt.Errorf("get rollout %s/%s: %w", c.namespace, args[0], err)
		}
		return []v1alpha1.Rollout{ro}, nil
	}
	var list v1alpha1.RolloutList
	var opts []client.ListOption
	if !all {
		opts = append(opts, client.InNamespace(c.namespace))
	}
	if err := c.List(ctx, &list, opts...); err != nil {
		return nil, fmt.Errorf("list rollouts: %w", err)
	}
	return list.Items, nil
}

// printRollouts writes the status table, sorted by namespace and name.
func printRollouts(w io.Writer, items []v1alpha1.Rollout, allNamespaces bool, now time.Time) error {
	if len(items) == 0 {
		_, err := fmt.Fprintln(w, "No rollouts found.")
		return err
	}
	sort.Slice(items, func(i, j int) bool {
		if items[i].Namespace != items[j].Namespace {
			return items[i].Namespace < items[j].Namespace
		}
		return items[i].Name < items[j].Name
	})
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	head := "NAME\tPHASE\tWEIGHT\tSTEP\tSTABLE\tCANARY\tVERDICTS\tMESSAGE"
	if allNamespaces {
		head = "NAMESPACE\t" + head
	}
	fmt.Fprintln(tw, head)
	for _, ro := range items {
		st := ro.Status
		row := []string{ro.Name, orDash(string(st.Phase)), st.CurrentWeight.String(), stepColumn(ro),
			orDash(st.StableRevision), orDash(st.CanaryRevision), verdicts(st.Analysis, now), orDash(st.Message)}
		if allNamespaces {
			row = append([]string{ro.Namespace}, row...)
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	return tw.Flush()
}

func stepColumn(ro v1alpha1.Rollout) string {
	n := len(ro.Spec.Delivery.Steps)
	if !ro.Status.Phase.Active() {
		return "-"
	}
	switch ro.Spec.Delivery.Mode {
	case v1alpha1.ModeAB:
		return "ab"
	case v1alpha1.ModeBeta:
		if ro.Status.ReleasedAt == nil && ro.Status.Phase == v1alpha1.PhaseProgressing {
			return "cohort"
		}
	}
	if n == 0 {
		return "-"
	}
	return fmt.Sprintf("%d/%d", min(int(ro.Status.CurrentStepIndex)+1, n), n)
}

// verdicts summarises the latest analysis: each metric's newest verdict and
// value, with its age.
func verdicts(ds []v1alpha1.AnalysisDecision, now time.Time) string {
	if len(ds) == 0 {
		return "-"
	}
	latest := ds[len(ds)-1].Time
	var parts []string
	seen := map[string]bool{}
	for i := len(ds) - 1; i >= 0; i-- {
		d := ds[i]
		if seen[d.Metric] || !d.Time.Equal(&latest) {
			continue
		}
		seen[d.Metric] = true
		parts = append(parts, fmt.Sprintf("%s=%s(%s/%s)", d.Metric, d.Verdict, d.Value, d.Threshold))
	}
	sort.Strings(parts)
	return strings.Join(parts, ",") + " " + now.Sub(latest.Time).Round(time.Second).String() + " ago"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// rolloutAction turns a user's request into a merge patch of the Rollout's
// spec, or explains why the request cannot apply to the Rollout as it is.
type rolloutAction func(ro *v1alpha1.Rollout, req actionRequest) (map[string]any, error)

// actionRequest is who asks, why, and (for retry) which revision.
type actionRequest struct {
	user, reason, revision string
	now                    time.Time
}

func (r actionRequest) action(rev string) *v1alpha1.RolloutAction {
	return &v1alpha1.RolloutAction{Revision: rev, RequestedAt: metav1.NewTime(r.now), RequestedBy: r.user, Reason: r.reason}
}

var errNoCanary = errors.New("no canary in flight")

func canaryRevision(ro *v1alpha1.Rollout) (string, error) {
	switch ro.Status.Phase {
	case v1alpha1.PhaseProgressing, v1alpha1.PhasePaused:
		return ro.Status.CanaryRevision, nil
	}
	return "", fmt.Errorf("rollout %s/%s is %s: %w", ro.Namespace, ro.Name, orDash(string(ro.Status.Phase)), errNoCanary)
}

func actionPromote(ro *v1alpha1.Rollout, req actionRequest) (map[string]any, error) {
	rev, err := canaryRevision(ro)
	if err != nil {
		return nil, err
	}
	return map[string]any{"promote": req.action(rev)}, nil
}

func actionAbort(ro *v1alpha1.Rollout, req actionRequest) (map[string]any, error) {
	rev, err := canaryRevision(ro)
	if err != nil {
		return nil, err
	}
	return map[string]any{"abort": req.action(rev)}, nil
}

func actionPause(*v1alpha1.Rollout, actionRequest) (map[string]any, error) {
	return map[string]any{"paused": true}, nil
}

func actionResume(*v1alpha1.Rollout, actionRequest) (map[string]any, error) {
	return map[string]any{"paused": nil}, nil
}

func actionRetry(ro *v1alpha1.Rollout, req actionRequest) (map[string]any, error) {
	fs := ro.Status.FailedRevisions
	rev := req.revision
	if rev == "" {
		if len(fs) == 0 {
			return nil, fmt.Errorf("rollout %s/%s has no failed revision to retry", ro.Namespace, ro.Name)
		}
		rev = fs[len(fs)-1].Revision
	}
	for _, f := range fs {
		if f.Revision == rev {
			return map[string]any{"retryRevision": rev}, nil
		}
	}
	known := make([]string, len(fs))
	for i, f := range fs {
		known[i] = f.Revision
	}
	return nil, fmt.Errorf("revision %q is not among rollout %s/%s's failed revisions [%s]", rev, ro.Namespace, ro.Name,
		strings.Join(known, ", "))
}

func newRolloutActionCommand(name, short string, act rolloutAction) *cobra.Command {
	var f rolloutFlags
	var req actionRequest
	cmd := &cobra.Command{
		Use:   name + " <name>",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.connect()
			if err != nil {
				return err
			}
			req.user, req.now = c.user, time.Now()
			ctx := cmd.Context()
			var ro v1alpha1.Rollout
			key := types.NamespacedName{Namespace: c.namespace, Name: args[0]}
			if err := c.Get(ctx, key, &ro); err != nil {
				if apierrors.IsNotFound(err) {
					return fmt.Errorf("rollout %s not found in namespace %s (is the Deployment annotated sluice.dev/rollout?)", key.Name, key.Namespace)
				}
				return fmt.Errorf("get rollout %s: %w", key, err)
			}
			spec, err := act(&ro, req)
			if err != nil {
				return err
			}
			patch, err := json.Marshal(map[string]any{"spec": spec})
			if err != nil {
				return err
			}
			if err := c.Patch(ctx, &ro, client.RawPatch(types.MergePatchType, patch)); err != nil {
				return fmt.Errorf("%s rollout %s: %w", name, key, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rollout %s: %s requested\n", key, name)
			return nil
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&req.reason, "reason", "", "why, recorded on the Rollout and in its events")
	if name == "retry" {
		cmd.Flags().StringVar(&req.revision, "revision", "", "the failed revision to retry (default: the latest failed)")
	}
	return cmd
}
