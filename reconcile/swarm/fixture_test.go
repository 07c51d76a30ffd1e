package swarm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"testing"

	"github.com/moby/moby/api/types/mount"
	swarmapi "github.com/moby/moby/api/types/swarm"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/reconcile"
	"github.com/lockstep-gitops/lockstep/reconcile/internal/fake"
)

const (
	ns  = "lst"
	reg = "10.237.0.1:5000"
)

// release is what the test stack's compose files say at one commit.
type release struct {
	commit      string
	webImage    string
	webEnv      []string
	webReplicas uint64
	workerConf  string
	extra       func(*compose.Stack)
}

func v1() release {
	return release{commit: fake.CommitA, webImage: reg + "/web:v1", webEnv: []string{"API_URL=http://api", "LOG=info"},
		webReplicas: 3, workerConf: "level=info\n"}
}

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func object(key, content string) compose.StackObject {
	h := sha(content)
	return compose.StackObject{Key: key, Name: fmt.Sprintf("%s_%s_%s", ns, key, h[:12]), ContentHash: h,
		Labels: map[string]string{compose.LabelStackNamespace: ns, compose.LabelContentHash: h}}.WithData([]byte(content))
}

// stack is the desired stack of r, as the converter makes it: web (3
// replicas, healthcheck, published port, start-first), worker (a config
// from the repo), db (a secret, a named volume, a placement constraint).
func (r release) stack() *compose.Stack {
	conf := object("app_conf", r.workerConf)
	pw := object("db_pw", "s3cret")
	st := &compose.Stack{
		Namespace: ns,
		Networks:  []compose.StackNetwork{{Key: "default", Name: ns + "_default", Driver: "overlay", Labels: map[string]string{compose.LabelStackNamespace: ns}}},
		Configs:   []compose.StackObject{conf},
		Secrets:   []compose.StackObject{pw},
	}
	st.Services = []compose.StackService{
		r.service("db", "postgres:16", 1, func(s *swarmapi.ServiceSpec) {
			s.TaskTemplate.ContainerSpec.Secrets = []*swarmapi.SecretReference{{SecretName: pw.Name, File: &swarmapi.SecretReferenceFileTarget{Name: "db_pw"}}}
			s.TaskTemplate.ContainerSpec.Mounts = []mount.Mount{{Type: mount.TypeVolume, Source: ns + "_db_data", Target: "/var/lib/postgresql/data"}}
			s.TaskTemplate.Placement = &swarmapi.Placement{Constraints: []string{"node.role==manager"}}
		}),
		r.service("web", r.webImage, r.webReplicas, func(s *swarmapi.ServiceSpec) {
			s.TaskTemplate.ContainerSpec.Env = r.webEnv
			s.EndpointSpec = &swarmapi.EndpointSpec{Ports: []swarmapi.PortConfig{{TargetPort: 80, PublishedPort: 8080}}}
			s.UpdateConfig = &swarmapi.UpdateConfig{Parallelism: 1, Order: swarmapi.UpdateOrderStartFirst}
		}),
		r.service("worker", reg+"/worker:v1", 1, func(s *swarmapi.ServiceSpec) {
			s.TaskTemplate.ContainerSpec.Configs = []*swarmapi.ConfigReference{{ConfigName: conf.Name, File: &swarmapi.ConfigReferenceFileTarget{Name: "/app.conf"}}}
		}),
	}
	st.Services[0].Secrets = []string{"db_pw"}
	st.Services[1].Healthcheck = true
	st.Services[2].Configs = []string{"app_conf"}
	if r.extra != nil {
		r.extra(st)
	}
	return st
}

// service is one service of r's stack, with its labels and hash (over
// the spec without the commit, as the converter's).
func (r release) service(key, image string, replicas uint64, mod func(*swarmapi.ServiceSpec)) compose.StackService {
	name := ns + "_" + key
	spec := swarmapi.ServiceSpec{
		Annotations: swarmapi.Annotations{Name: name, Labels: map[string]string{
			compose.LabelStackNamespace: ns, compose.LabelStackImage: image, compose.LabelEnvironment: "production",
		}},
		TaskTemplate: swarmapi.TaskSpec{
			ContainerSpec: &swarmapi.ContainerSpec{Image: image, Labels: map[string]string{compose.LabelStackNamespace: ns}},
			Networks:      []swarmapi.NetworkAttachmentConfig{{Target: ns + "_default", Aliases: []string{key}}},
		},
		Mode: swarmapi.ServiceMode{Replicated: &swarmapi.ReplicatedService{Replicas: &replicas}},
	}
	if mod != nil {
		mod(&spec)
	}
	return finish(compose.StackService{Key: key, Name: name, Image: image, Spec: spec}, r.commit)
}

// finish sets svc's hash and commit label as the converter does.
func finish(svc compose.StackService, commit string) compose.StackService {
	svc.Spec.Labels = maps.Clone(svc.Spec.Labels)
	delete(svc.Spec.Labels, compose.LabelCommit)
	delete(svc.Spec.Labels, compose.LabelHash)
	b, err := json.Marshal(svc.Spec)
	if err != nil {
		panic(err)
	}
	svc.Hash = sha(string(b))
	svc.Spec.Labels[compose.LabelHash] = svc.Hash
	svc.Spec.Labels[compose.LabelCommit] = commit
	return svc
}

// newSwarm is an empty fake swarm whose registry has the test images.
func newSwarm() (*fakeSwarm, *fake.AutoClock) {
	clock := fake.NewAutoClock()
	f := newFakeSwarm(clock)
	for _, ref := range []string{reg + "/web:v1", reg + "/web:v2", reg + "/worker:v1", "postgres:16", "redis:7"} {
		f.digests[ref] = "sha256:" + sha(ref)
	}
	return f, clock
}

func observe(t *testing.T, f *fakeSwarm, st *compose.Stack) compose.ObservedStack {
	t.Helper()
	o, err := f.ObserveStack(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// deploy plans and applies st on f, as a pass does before its gate.
func deploy(t *testing.T, f *fakeSwarm, st *compose.Stack) (*reconcile.Plan, *reconcile.ApplyResult) {
	t.Helper()
	o := observe(t, f, st)
	plan := BuildPlan(st, o)
	res, err := Apply(context.Background(), f, st, o, plan, ApplyOptions{})
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	return plan, res
}

// actionLines are a plan's actions, one line each, for comparing.
func actionLines(acts []reconcile.Action) []string {
	var out []string
	for _, a := range acts {
		what := a.SwarmService + a.Network + a.Config + a.Secret
		line := fmt.Sprintf("%s %s: %v", a.Kind, what, a.Reasons)
		if a.Drift {
			line += " [drift]"
		}
		out = append(out, line)
	}
	return out
}
