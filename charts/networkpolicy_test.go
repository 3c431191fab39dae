package charts

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// peerSummary is one ingress rule, reduced to what the tests compare.
type peerSummary struct {
	Ports []string
	From  []networkingv1.NetworkPolicyPeer
}

// ingressByPort maps each named port to the rule that opens it.
func ingressByPort(t *testing.T, np *networkingv1.NetworkPolicy) map[string]peerSummary {
	t.Helper()
	out := map[string]peerSummary{}
	for _, r := range np.Spec.Ingress {
		var ports []string
		for _, p := range r.Ports {
			if p.Port == nil || p.Port.StrVal == "" || p.Protocol == nil || *p.Protocol != corev1.ProtocolTCP {
				t.Fatalf("ingress port %+v: want a named TCP port", p)
			}
			ports = append(ports, p.Port.StrVal)
		}
		for _, p := range ports {
			if _, dup := out[p]; dup {
				t.Errorf("port %s is opened by two rules", p)
			}
			out[p] = peerSummary{Ports: ports, From: r.From}
		}
	}
	return out
}

// TestNetworkPolicy checks who the chart lets reach each port. The local
// cluster has no network plugin, so enforcement is not tested; e2e applies
// the policy by server-side dry-run.
func TestNetworkPolicy(t *testing.T) {
	sluicePods := map[string]string{"app.kubernetes.io/name": "sluice", "app.kubernetes.io/instance": "sluice"}
	anyPod := []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{}}}
	ownPods := []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: sluicePods}}}
	tests := map[string]map[string]peerSummary{
		"default": {
			// No apiserverCIDRs: the webhook port is open to any source.
			"webhook": {Ports: []string{"webhook"}},
			"xds":     {Ports: []string{"xds"}, From: anyPod},
			"peers":   {Ports: []string{"peers"}, From: ownPods},
			"metrics": {Ports: []string{"metrics"}, From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{
				MatchLabels: map[string]string{"kubernetes.io/metadata.name": "monitoring"}}}}},
			"health": {Ports: []string{"health"}},
		},
		"legacy-xds": {
			"webhook": {Ports: []string{"webhook"}, From: []networkingv1.NetworkPolicyPeer{
				{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.1/32"}}, {IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.2/32"}}}},
			"xds":        {Ports: []string{"xds", "xds-legacy"}, From: anyPod},
			"xds-legacy": {Ports: []string{"xds", "xds-legacy"}, From: anyPod},
			"peers":      {Ports: []string{"peers"}, From: ownPods},
			// allowFromNamespaces empty: no rule opens the metrics port.
			"health": {Ports: []string{"health"}},
		},
	}
	for name, want := range tests {
		t.Run(name, func(t *testing.T) {
			r := decode(t, render(t, name))
			np := r.netpol
			if np == nil {
				t.Fatal("no NetworkPolicy rendered")
			}
			if diff := cmp.Diff(&metav1.LabelSelector{MatchLabels: sluicePods}, &np.Spec.PodSelector); diff != "" {
				t.Errorf("podSelector (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]networkingv1.PolicyType{networkingv1.PolicyTypeIngress}, np.Spec.PolicyTypes); diff != "" {
				t.Errorf("policyTypes (-want +got), egress stays open:\n%s", diff)
			}
			got := ingressByPort(t, np)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("ingress by port (-want +got):\n%s", diff)
			}
			// Every port named is a port of the controller's container.
			declared := map[string]bool{}
			for _, p := range r.deployment.Spec.Template.Spec.Containers[0].Ports {
				declared[p.Name] = true
			}
			for port := range got {
				if !declared[port] {
					t.Errorf("the policy opens port %q, which the container does not declare", port)
				}
			}
			for port := range declared {
				if _, ok := got[port]; !ok && port != "metrics" {
					t.Errorf("container port %q is reachable by no rule", port)
				}
			}
		})
	}
	out, err := Template(testContext(t), helm(t), chartDir, TemplateOptions{Set: []string{"networkPolicy.enabled=false"}})
	if err != nil {
		t.Fatal(err)
	}
	if r := decode(t, out); r.netpol != nil {
		t.Error("networkPolicy.enabled=false still renders a NetworkPolicy")
	}
}
