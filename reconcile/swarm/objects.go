package swarm

import (
	"fmt"
	"slices"
	"strings"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/reconcile"
)

// kind is configs or secrets: the two kinds of content-named objects.
type kind string

const (
	kindConfig kind = "config"
	kindSecret kind = "secret"
)

// stackIndex is the desired and observed stack, indexed for a plan.
type stackIndex struct {
	desired      *compose.Stack
	observed     compose.ObservedStack
	networkNames map[string]string // observed network id -> name
	services     map[string]compose.ObservedService
	wantServices map[string]*compose.StackService
	want         map[kind]map[string]compose.StackObject    // desired, by name
	have         map[kind]map[string]compose.ObservedObject // observed, by name
}

func newIndex(desired *compose.Stack, observed compose.ObservedStack) *stackIndex {
	st := &stackIndex{
		desired:      desired,
		observed:     observed,
		networkNames: map[string]string{},
		services:     map[string]compose.ObservedService{},
		wantServices: map[string]*compose.StackService{},
		want:         map[kind]map[string]compose.StackObject{kindConfig: {}, kindSecret: {}},
		have:         map[kind]map[string]compose.ObservedObject{kindConfig: {}, kindSecret: {}},
	}
	for _, n := range observed.Networks {
		st.networkNames[n.ID] = n.Name
	}
	for _, s := range observed.Services {
		st.services[s.Name] = s
	}
	for i := range desired.Services {
		st.wantServices[desired.Services[i].Name] = &desired.Services[i]
	}
	for _, o := range desired.Configs {
		st.want[kindConfig][o.Name] = o
	}
	for _, o := range desired.Secrets {
		st.want[kindSecret][o.Name] = o
	}
	for _, o := range observed.Configs {
		st.have[kindConfig][o.Name] = o
	}
	for _, o := range observed.Secrets {
		st.have[kindSecret][o.Name] = o
	}
	return st
}

func (st *stackIndex) desiredObjects(k kind) []compose.StackObject {
	if k == kindConfig {
		return st.desired.Configs
	}
	return st.desired.Secrets
}

func (st *stackIndex) observedObjects(k kind) []compose.ObservedObject {
	if k == kindConfig {
		return st.observed.Configs
	}
	return st.observed.Secrets
}

// objectAction is the action on one config or secret, named by kind.
func objectAction(k kind, create bool, name string) reconcile.Action {
	a := reconcile.Action{}
	switch {
	case k == kindConfig && create:
		a.Kind, a.Config = reconcile.ActCreateConfig, name
	case k == kindConfig:
		a.Kind, a.Config = reconcile.ActRemoveConfig, name
	case create:
		a.Kind, a.Secret = reconcile.ActCreateSecret, name
	default:
		a.Kind, a.Secret = reconcile.ActRemoveSecret, name
	}
	return a
}

// planObjects creates the stack's configs (secrets) whose content-named
// object does not exist: a new one, a changed content, or one removed by
// hand.
func (st *stackIndex) planObjects(k kind) []reconcile.Action {
	var out []reconcile.Action
	for _, o := range st.desiredObjects(k) {
		if o.External {
			continue // Check's
		}
		if _, ok := st.have[k][o.Name]; ok {
			continue
		}
		a := objectAction(k, true, o.Name)
		switch old := olderVersion(o, observedNames(st.observedObjects(k))); {
		case old != "":
			a.Reasons = []string{contentChanged(k, o, old)}
		case st.referenced(k, o.Name):
			a.Reasons, a.Drift = []string{fmt.Sprintf(reasonObjectMissing, k)}, true
		default:
			a.Reasons = []string{fmt.Sprintf(reasonNewObject, k)}
		}
		out = append(out, a)
	}
	return out
}

func contentChanged(k kind, o compose.StackObject, old string) string {
	what := o.Key
	if o.Source != "" {
		what += " (" + o.Source + ")"
	}
	return fmt.Sprintf("%s %s content changed (%s -> %s)", k, what, hashOfName(old), short(o.ContentHash))
}

// referenced reports whether an observed service's spec uses the object
// named name.
func (st *stackIndex) referenced(k kind, name string) bool {
	for _, s := range st.observed.Services {
		c := containerOf(s.Spec)
		names := configNames(c)
		if k == kindSecret {
			names = secretNames(c)
		}
		if slices.Contains(names, name) {
			return true
		}
	}
	return false
}

// planPrune lists the stack's objects of kind that the compose files no
// longer use: removed after convergence (see Prune), never by Apply.
func (st *stackIndex) planPrune(k kind) []reconcile.Action {
	var out []reconcile.Action
	for _, o := range st.observedObjects(k) {
		if _, ok := st.want[k][o.Name]; ok || o.Labels[compose.LabelStackNamespace] != st.desired.Namespace {
			continue
		}
		a := objectAction(k, false, o.Name)
		a.ObjectID = o.ID
		a.Reasons = []string{fmt.Sprintf("%s no longer in the compose files", k)}
		for _, w := range st.desiredObjects(k) {
			if olderVersion(w, []string{o.Name}) != "" {
				a.Reasons = []string{"replaced by " + w.Name}
			}
		}
		out = append(out, a)
	}
	return out
}

// objectDiff words how the objects of kind a service uses changed, by
// name: a new content of the same key is "content changed", not a removal
// and an addition. An object the spec names that the swarm no longer has
// was removed by hand.
func (st *stackIndex) objectDiff(k kind, want, got []string) []string {
	var out []string
	matched := map[string]bool{}
	for _, name := range want {
		o, known := st.want[k][name]
		if slices.Contains(got, name) {
			matched[name] = true
			if _, ok := st.have[k][name]; !ok && !o.External {
				out = append(out, fmt.Sprintf("%s %s missing (removed outside lockstep)", k, name))
			}
			continue
		}
		if !known {
			out = append(out, fmt.Sprintf("%s %s added", k, name))
			continue
		}
		if old := olderVersion(o, got); old != "" {
			matched[old] = true
			out = append(out, contentChanged(k, o, old))
			continue
		}
		out = append(out, fmt.Sprintf("%s %s added", k, o.Key))
	}
	for _, name := range got {
		if !matched[name] {
			out = append(out, fmt.Sprintf("%s %s removed", k, name))
		}
	}
	return out
}

// olderVersion is the name among names of another content of o (the same
// <stack>_<key>_ prefix, another 12-hex suffix), "" when none.
func olderVersion(o compose.StackObject, names []string) string {
	if o.External || len(o.ContentHash) < 12 || !strings.HasSuffix(o.Name, "_"+o.ContentHash[:12]) {
		return ""
	}
	prefix := strings.TrimSuffix(o.Name, o.ContentHash[:12])
	for _, n := range names {
		if n != o.Name && strings.HasPrefix(n, prefix) && isHex12(n[len(prefix):]) {
			return n
		}
	}
	return ""
}

func hashOfName(name string) string {
	if i := strings.LastIndex(name, "_"); i >= 0 && isHex12(name[i+1:]) {
		return name[i+1:]
	}
	return name
}

func isHex12(s string) bool {
	if len(s) != 12 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func observedNames(objs []compose.ObservedObject) []string {
	out := make([]string, 0, len(objs))
	for _, o := range objs {
		out = append(out, o.Name)
	}
	return out
}
