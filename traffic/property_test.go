package traffic

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"pgregory.net/rapid"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/router"
)

// genObjects draws pods of a few services with random tracks, readiness,
// termination and ports, and a rollout per service.
func genObjects(t *rapid.T) Objects {
	var objs Objects
	n := rapid.IntRange(0, 12).Draw(t, "pods")
	for i := range n {
		svc := rapid.SampledFrom([]string{"checkout", "search", "cart"}).Draw(t, "service")
		var opts []podOpt
		if rapid.Bool().Draw(t, "canary") {
			opts = append(opts, canaryPod)
		}
		if rapid.Bool().Draw(t, "unready") {
			opts = append(opts, notReady)
		}
		if rapid.Bool().Draw(t, "terminating") {
			opts = append(opts, terminating)
		}
		port := rapid.SampledFrom([]int32{8080, 8081, 9000}).Draw(t, "port")
		opts = append(opts, ports(corev1.ContainerPort{Name: "grpc", ContainerPort: port}))
		objs.Pods = append(objs.Pods, pod(fmt.Sprintf("p%d", i), svc, fmt.Sprintf("10.0.0.%d", i+1), opts...))
	}
	for _, svc := range []string{"checkout", "search", "cart"} {
		if rapid.Bool().Draw(t, "rollout") {
			phase := rapid.SampledFrom([]v1alpha1.RolloutPhase{v1alpha1.PhaseIdle, v1alpha1.PhaseProgressing, v1alpha1.PhasePromoting}).Draw(t, "phase")
			w := v1alpha1.BasisPoints(rapid.IntRange(0, 10000).Draw(t, "weight"))
			objs.Rollouts = append(objs.Rollouts, rollout(svc, v1alpha1.ModeCanary, phase, w))
		}
	}
	return objs
}

func shuffled[T any](t *rapid.T, s []T, label string) []T {
	out := append([]T(nil), s...)
	for i := len(out) - 1; i > 0; i-- {
		j := rapid.IntRange(0, i).Draw(t, label)
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// TestStateFromOrderIndependent: the state depends on the objects, not on the
// order the informers list them in, and router.Build always accepts it.
func TestStateFromOrderIndependent(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		objs := genObjects(t)
		want, wantProblems := StateFrom(objs)
		perm := Objects{Pods: shuffled(t, objs.Pods, "podperm"), Rollouts: shuffled(t, objs.Rollouts, "rolloutperm")}
		got, gotProblems := StateFrom(perm)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("state depends on input order (-first +second):\n%s", diff)
		}
		if diff := cmp.Diff(wantProblems, gotProblems); diff != "" {
			t.Fatalf("problems depend on input order:\n%s", diff)
		}
		if _, err := router.Build(got); err != nil {
			t.Fatalf("router.Build rejects the state: %v", err)
		}
		for _, s := range got.Services {
			for _, e := range s.Endpoints {
				if e.Ready {
					for _, p := range objs.Pods {
						if p.Name == e.Pod && p.DeletionTimestamp != nil {
							t.Fatalf("terminating pod %s is ready", p.Name)
						}
					}
				}
			}
		}
	})
}
