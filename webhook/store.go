package webhook

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/policies"
)

// PolicyStore holds every DeploymentPolicy compiled, for the admission
// handlers. A policy is compiled once per change (keyed by UID and
// generation), and readers get an immutable PolicySnapshot through one atomic
// load: the admission path never takes a lock or compiles anything.
type PolicyStore struct {
	mu      sync.Mutex // serialises writers only
	entries map[types.UID]*storeEntry
	snap    atomic.Pointer[PolicySnapshot]
}

// storeEntry is one policy as compiled.
type storeEntry struct {
	uid        types.UID
	name       string
	generation int64
	compiled   *policies.Compiled
	// err is the *policies.CompileError when the policy does not compile.
	err error
	// namespaces is the policy's namespace selector, nil when it does not
	// parse (the policy then cannot be applied anywhere).
	namespaces labels.Selector
	inject     map[string]string
	// enforce is true for a policy in Enforce mode (the default).
	enforce bool
}

// PolicySnapshot is an immutable view of the store at one instant.
type PolicySnapshot struct {
	// Compiled are the policies that compiled, in name order.
	Compiled []*policies.Compiled
	// CELReads are the fields their CEL rules read, for policies.Input.
	CELReads *policies.CELReads
	entries  []*storeEntry
	// injected memoizes InjectLabels by namespace: a snapshot lives until
	// the next policy change, and a namespace's labels seldom change.
	injected namespaceMemo[map[string]string]
}

// NewPolicyStore returns an empty store.
func NewPolicyStore() *PolicyStore {
	s := &PolicyStore{entries: map[types.UID]*storeEntry{}}
	s.snap.Store(&PolicySnapshot{})
	return s
}

// Snapshot returns the current policies. It never blocks.
func (s *PolicyStore) Snapshot() *PolicySnapshot {
	return s.snap.Load()
}

// Upsert compiles p unless the same UID and generation are already held,
// and publishes a new snapshot.
func (s *PolicyStore) Upsert(p *v1alpha1.DeploymentPolicy) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.entries[p.UID]; ok && e.generation == p.Generation && e.name == p.Name {
		return
	}
	e := &storeEntry{uid: p.UID, name: p.Name, generation: p.Generation,
		enforce: p.Spec.Mode == "" || p.Spec.Mode == v1alpha1.ModeEnforce}
	e.compiled, e.err = policies.Compile(p)
	if p.Spec.NamespaceSelector == nil {
		e.namespaces = labels.Everything()
	} else if sel, err := metav1.LabelSelectorAsSelector(p.Spec.NamespaceSelector); err == nil {
		e.namespaces = sel
	}
	if e.err == nil {
		e.inject = p.Spec.InjectLabels
	}
	s.entries[p.UID] = e
	s.publish()
}

// Delete forgets the policy with uid and publishes a new snapshot.
func (s *PolicyStore) Delete(uid types.UID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.entries[uid]; !ok {
		return
	}
	delete(s.entries, uid)
	s.publish()
}

// publish builds and stores a snapshot; s.mu is held.
func (s *PolicyStore) publish() {
	snap := &PolicySnapshot{entries: make([]*storeEntry, 0, len(s.entries))}
	for _, e := range s.entries {
		snap.entries = append(snap.entries, e)
	}
	// Name order is the order policies.Evaluate applies policies in, and
	// the order in which the first injected value of a label wins.
	sort.Slice(snap.entries, func(i, j int) bool {
		if snap.entries[i].name != snap.entries[j].name {
			return snap.entries[i].name < snap.entries[j].name
		}
		return snap.entries[i].uid < snap.entries[j].uid
	})
	for _, e := range snap.entries {
		if e.compiled != nil {
			snap.Compiled = append(snap.Compiled, e.compiled)
		}
	}
	snap.CELReads = policies.ReadsOf(snap.Compiled)
	s.snap.Store(snap)
}

// InjectLabelsFor is InjectLabels of ns's labels, memoized for the
// namespace's resourceVersion. The map returned is shared: read it only.
func (snap *PolicySnapshot) InjectLabelsFor(ns *corev1.Namespace) map[string]string {
	return snap.injected.get(ns, func() map[string]string { return snap.InjectLabels(ns.Labels) })
}

// InjectLabels merges the injectLabels of the compiled policies selecting a
// namespace with these labels, the first policy by name winning a conflict,
// exactly as policies.Evaluate does.
func (snap *PolicySnapshot) InjectLabels(namespaceLabels map[string]string) map[string]string {
	var out map[string]string
	set := labels.Set(namespaceLabels)
	for _, e := range snap.entries {
		if len(e.inject) == 0 || e.compiled == nil || !e.namespaces.Matches(set) {
			continue
		}
		if out == nil {
			out = make(map[string]string, len(e.inject))
		}
		for k, v := range e.inject {
			if _, taken := out[k]; !taken {
				out[k] = v
			}
		}
	}
	return out
}

// Unapplied says what admission does about the policies that select a
// namespace with these labels but do not compile:
//
//   - a policy in Enforce mode whose selector can be read fails closed: it
//     denies every Deployment it selects, with the reason (deny), until it is
//     fixed; a broken guard must not let everything through;
//   - a policy in Warn or Audit mode is not applied, and admission says so
//     (warnings);
//   - a policy whose namespace selector cannot be read selects nothing it
//     can tell: it is not applied anywhere and every namespace is warned,
//     never denied (a typo in one selector must not hold every team).
func (snap *PolicySnapshot) Unapplied(namespaceLabels map[string]string) (deny field.ErrorList, warnings []string) {
	set := labels.Set(namespaceLabels)
	for _, e := range snap.entries {
		if e.err == nil || (e.namespaces != nil && !e.namespaces.Matches(set)) {
			continue
		}
		reason := strings.ReplaceAll(e.err.Error(), "\n", "; ")
		if e.namespaces != nil && e.enforce {
			deny = append(deny, field.Forbidden(field.NewPath("metadata", "namespace"), policies.Truncate(fmt.Sprintf(
				"DeploymentPolicy %s (Enforce) selects this namespace but does not compile, so it denies every Deployment here until it is fixed: %s",
				e.name, reason), maxPolicyReason)))
			continue
		}
		warnings = append(warnings, fmt.Sprintf("DeploymentPolicy %s is not applied because it does not compile: %s", e.name, reason))
	}
	return deny, warnings
}

// maxPolicyReason bounds the text of a broken policy's denial.
const maxPolicyReason = 1024

// eventHandler feeds the store from a DeploymentPolicy informer.
func (s *PolicyStore) eventHandler() toolscache.ResourceEventHandler {
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if p, ok := obj.(*v1alpha1.DeploymentPolicy); ok {
				s.Upsert(p)
			}
		},
		UpdateFunc: func(_, obj any) {
			if p, ok := obj.(*v1alpha1.DeploymentPolicy); ok {
				s.Upsert(p)
			}
		},
		DeleteFunc: func(obj any) {
			if tomb, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			if p, ok := obj.(*v1alpha1.DeploymentPolicy); ok {
				s.Delete(p.UID)
			}
		},
	}
}
