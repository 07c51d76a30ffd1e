package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"
)

// swarmSnapshot is what a refused release must leave as it was: each
// service's version and spec, and the stack's configs and networks, and
// whether the swarm has a network named edge (an external one is no
// stack's; the swarm's other networks are other tests').
type swarmSnapshot struct {
	services map[string]string // key -> "version spec"
	configs  []string
	networks []string
	edge     bool
}

func (f *swarmFixture) snapshot() swarmSnapshot {
	f.t.Helper()
	s := swarmSnapshot{services: map[string]string{}, configs: f.configNames(), networks: f.networkNames()}
	for k, svc := range f.services() {
		spec, err := json.Marshal(svc.Spec)
		must(f.t, err)
		s.services[k] = fmt.Sprintf("v%d %s", svc.Version.Index, spec)
	}
	slices.Sort(s.configs)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	list, err := f.cli.NetworkList(ctx, client.NetworkListOptions{})
	must(f.t, err)
	for _, n := range list.Items {
		s.edge = s.edge || n.Name == "edge"
	}
	return s
}

// sameSwarm fails the test unless the stack is as before.
func (f *swarmFixture) sameSwarm(before swarmSnapshot) {
	f.t.Helper()
	after := f.snapshot()
	for k, v := range before.services {
		if after.services[k] != v {
			f.t.Errorf("service %s changed:\n was %s\n now %s", k, v, after.services[k])
		}
	}
	if len(after.services) != len(before.services) {
		f.t.Errorf("services: %d, were %d", len(after.services), len(before.services))
	}
	for _, c := range []struct {
		what       string
		was, after []string
	}{{"configs", before.configs, after.configs}, {"stack networks", before.networks, after.networks}} {
		if !slices.Equal(c.was, c.after) {
			f.t.Errorf("%s changed: %v, were %v", c.what, c.after, c.was)
		}
	}
	if after.edge != before.edge {
		f.t.Errorf("a network named edge: %v, was %v", after.edge, before.edge)
	}
}

// withWeb is compose with lines added to web's service, right under its
// image: line (line 4 of swarmStackYAML).
func withWeb(t *testing.T, compose, webImage, lines string) string {
	t.Helper()
	at := "    image: " + webImage + "\n"
	if !strings.Contains(compose, at) {
		t.Fatalf("no %q in the compose file", at)
	}
	return strings.Replace(compose, at, at+lines, 1)
}

// TestSwarmBadInput (issue 12, scenario 7): after a healthy deployment,
// a release the swarm cannot run is refused with a message that says
// what and where, and nothing on the swarm is touched (every service's
// version and spec, the stack's configs and networks, the swarm's
// networks). Each bad release also changes the worker's config, so a
// refusal that came after the first change would show: (a) a key a swarm
// service cannot honour (privileged: true, network_mode: host), refused by
// validate (and plan) and apply naming file, line, service and key; (b) an
// external network that does not exist, refused by plan and apply naming
// it; (c) an image tag the registry does not have, refused by apply
// naming the image (plan does not ask the registry). Last, a good
// release applied on a manager that is not the leader is held: nothing
// applied, and stdout says so.
func TestSwarmBadInput(t *testing.T) {
	f := newSwarmFixture(t)
	web := f.images["web:a"]
	good := swarmStackYAML(web, f.images["worker:a"], "")
	f.release("stack G", map[string]string{"compose.yaml": good, "worker/config.txt": "one\n"})
	start := time.Now()
	f.apply()
	t.Logf("apply of G: %s", time.Since(start).Round(100*time.Millisecond))
	missing := f.registry + "/web:nosuchtag"
	cases := []struct {
		name, yaml string
		want       []string
		before     []string // commands that refuse it too, before apply
	}{
		{"privileged", withWeb(t, good, web, "    privileged: true\n"),
			[]string{`compose.yaml:4: service "web": privileged: `, "cap_add"}, []string{"validate", "plan"}},
		{"network_mode host", withWeb(t, good, web, "    network_mode: host\n"),
			[]string{`compose.yaml:4: service "web": network_mode: `, "external: true"}, []string{"validate"}},
		{"unknown external network", withWeb(t, good, web, "    networks: [edge]\n") + "networks:\n  edge:\n    external: true\n",
			[]string{"external network edge (networks.edge) does not exist"}, []string{"plan"}},
		{"missing image", strings.Replace(good, web, missing, 1),
			[]string{"resolve image " + missing + " of service web (" + f.project + "_web)", "not found in registry"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f.t = t
			before := f.snapshot()
			f.release("refused: "+tc.name, map[string]string{"compose.yaml": tc.yaml, "worker/config.txt": "changed\n"})
			f.refusedBeforeApply(tc.before, tc.want)
			r := f.lockstep("apply", "e2e")
			t.Logf("apply said: %s", lastLine(r.stderr))
			if r.code == 0 {
				t.Fatalf("apply of the refused release succeeded: %s", r)
			}
			assertSays(t, r.stdout+r.stderr, tc.want...)
			f.sameSwarm(before)
		})
	}
	t.Run("apply on a manager that is not the leader", func(t *testing.T) {
		f.t = t
		f.applyOnFollower(good)
	})
}

// applyOnFollower: lockstep pointed at a manager that is not the leader
// plans a good release and applies nothing, and says so.
func (f *swarmFixture) applyOnFollower(good string) {
	t := f.t
	follower := (f.sw.Leader(t) + 1) % len(f.sw.Hosts)
	f.agentExtra = fmt.Sprintf("\n[engine]\nhost = %q\n", f.sw.Hosts[follower])
	f.writeConfig("backend = \"swarm\"\n")
	before := f.snapshot()
	f.release("good, on a follower", map[string]string{"compose.yaml": good, "worker/config.txt": "changed\n"})
	r := f.lockstep("apply", "e2e")
	t.Logf("apply on node %d said: %s", follower, lastLine(r.stdout))
	if r.code != 0 {
		t.Errorf("apply on a follower: want exit 0 (held: the agent on the leader applies), got %s", r)
	}
	assertSays(t, r.stdout, "e2e: nothing applied: ", "is a manager but not the leader")
	f.sameSwarm(before)
}

// refusedBeforeApply: the commands cmds (validate, plan) refuse the
// release as apply does.
func (f *swarmFixture) refusedBeforeApply(cmds, want []string) {
	t := f.t
	for _, cmd := range cmds {
		r := f.lockstep(cmd, "e2e")
		t.Logf("%s said: %s", cmd, lastLine(r.stdout+r.stderr))
		if r.code == 0 {
			t.Errorf("%s accepted the release: %s", cmd, r)
		}
		assertSays(t, r.stdout+r.stderr, want...)
	}
}
