package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/lockstep-gitops/lockstep/e2e/harness"
)

// TestRefusalsTouchNothing pins, one after the other, revisions that
// Docker Compose refuses before it creates anything: two services with one
// container_name, container_name with two replicas, a network found under
// the project network's name that compose did not create for it, and an
// external network or volume that does not exist. Each apply must fail
// saying what is wrong, leave every container as it was (same IDs, same
// state, never restarted) and the volume data as it was; the next revision,
// without the problem, must converge.
func TestRefusalsTouchNothing(t *testing.T) {
	cli := harness.RequireDocker(t)
	// The network case creates a network without compose labels, which the
	// harness cannot find by label. Registered before the fixture, this
	// cleanup runs after the fixture's, once no container uses it.
	plainNet := ""
	t.Cleanup(func() { removeNetwork(t, cli, plainNet) })
	f := newFixture(t)
	good := stack{WebImage: f.images["web:a"], WorkerImage: f.images["worker:a"], DBImage: f.images["db:a"], WithWorker: true}
	f.release("good", map[string]string{
		"compose.yaml":      good.yaml(),
		"worker/config.txt": "threads = 1\n",
	})
	f.apply()
	p := f.project
	withServices := func(blocks string) string {
		s := good
		s.Services = blocks
		return s.yaml()
	}
	service := func(name, extra string) string {
		return "  " + name + ":\n    image: " + f.images["worker:a"] + "\n    networks: [backend]\n" + extra
	}

	cases := []struct {
		name     string
		setup    func() // engine state the problem needs
		problem  string // compose.yaml of the refused revision
		want     []string
		validate bool   // validate refuses it too (a compose-file problem)
		fixed    string // compose.yaml of the next revision, which converges
		check    func(t *testing.T)
	}{
		{
			name: "two services with one container_name",
			problem: withServices(service("one", "    container_name: "+p+"-same\n") +
				service("two", "    container_name: "+p+"-same\n")),
			want: []string{"compose.yaml:", `service "two": container_name`,
				`container name "` + p + `-same" is already in use by service one`},
			validate: true,
			fixed: withServices(service("one", "    container_name: "+p+"-one\n") +
				service("two", "    container_name: "+p+"-two\n")),
			check: func(t *testing.T) {
				w := world(t, cli, p)
				if w["one"].Name != p+"-one" || w["two"].Name != p+"-two" {
					t.Errorf("containers after the fix: %s and %s, want %s-one and %s-two", w["one"].Name, w["two"].Name, p, p)
				}
			},
		},
		{
			name:     "container_name with two replicas",
			problem:  withServices(service("solo", "    container_name: "+p+"-solo\n    deploy:\n      replicas: 2\n")),
			want:     []string{"compose.yaml:", `service "solo": container_name`, "deploy.replicas", "container names must be unique"},
			validate: true,
			fixed:    withServices(service("solo", "    container_name: "+p+"-solo\n    deploy:\n      replicas: 1\n")),
			check: func(t *testing.T) {
				if w := world(t, cli, p); w["solo"].Name != p+"-solo" || w["solo"].State != "running" {
					t.Errorf("solo after the fix: %q %s, want %s-solo running", w["solo"].Name, w["solo"].State, p)
				}
			},
		},
		{
			name:    "external network that does not exist",
			problem: webOnNetwork(t, good.yaml(), "outside", "  outside:\n    external: true\n    name: "+p+"_outside\n"),
			want:    []string{`external network "` + p + `_outside" (networks.outside) does not exist`, "docker network create"},
			fixed:   good.yaml(),
		},
		{
			name:    "external volume that does not exist",
			problem: workerWithVolume(t, good.yaml(), "certs", "  certs:\n    external: true\n    name: "+p+"_certs\n"),
			want:    []string{`external volume "` + p + `_certs" (volumes.certs) does not exist`, "docker volume create"},
			fixed:   good.yaml(),
		},
		{
			name: "network of the project's name not created by compose",
			setup: func() {
				plainNet = p + "_extra"
				createPlainNetwork(t, cli, plainNet)
			},
			problem: webOnNetwork(t, good.yaml(), "extra", "  extra: {}\n"),
			want: []string{`network "` + p + `_extra" (networks.extra) was found but has incorrect label com.docker.compose.network set to ""`,
				"external: true"},
			// Marked external, as the refusal says, it is used as it is.
			fixed: webOnNetwork(t, good.yaml(), "extra", "  extra:\n    external: true\n    name: "+p+"_extra\n"),
			check: func(t *testing.T) {
				if _, ok := world(t, cli, p)["web"].inspect.NetworkSettings.Networks[plainNet]; !ok {
					t.Errorf("web is not on %s after the fix", plainNet)
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f.t = t
			before := world(t, cli, p)
			bootLog := volumeFile(t, cli, p+"_dbdata", "boot.log")
			if tc.setup != nil {
				tc.setup()
			}
			f.release("refused: "+tc.name, map[string]string{"compose.yaml": tc.problem})
			if tc.validate {
				r := f.lockstep("validate", "e2e")
				if r.code == 0 {
					t.Errorf("validate accepted the refused revision: %s", r)
				}
				assertSays(t, r.stderr, tc.want...)
			} else if pl := f.plan(); !strings.Contains(strings.Join(pl.Warnings, "\n"), tc.want[0]) {
				// An engine-state problem: the plan warns of what apply refuses.
				t.Errorf("plan warnings %q do not say %q", pl.Warnings, tc.want[0])
			}
			r := f.lockstep("apply", "e2e")
			if r.code == 0 {
				t.Fatalf("apply of the refused revision succeeded: %s", r)
			}
			t.Logf("lockstep said: %s", lastLine(r.stderr))
			assertSays(t, r.stderr, tc.want...)
			sameWorld(t, before, world(t, cli, p))
			if got := volumeFile(t, cli, p+"_dbdata", "boot.log"); got != bootLog {
				t.Errorf("db volume changed: %q, was %q", got, bootLog)
			}
			if plainNet != "" {
				assertPlainNetwork(t, cli, plainNet)
			}

			f.release("fixed: "+tc.name, map[string]string{"compose.yaml": tc.fixed})
			f.apply()
			if pl := f.plan(); !pl.Empty() {
				t.Errorf("after the fixed revision the plan is not empty: %+v", pl.Actions)
			}
			if tc.check != nil {
				tc.check(t)
			}
		})
	}
	f.t = t
}

// lastLine is the last line of a command's output: the error it ended with,
// after the log lines.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// webOnNetwork puts web (the first service of a stack) on the network key
// too, declared as decl under the top-level networks.
func webOnNetwork(t *testing.T, yaml, key, decl string) string {
	t.Helper()
	yaml = replaceOnce(t, yaml, "    networks: [backend]\n", "    networks: [backend, "+key+"]\n")
	return replaceOnce(t, yaml, "\nnetworks:\n  backend: {}\n", "\nnetworks:\n  backend: {}\n"+decl)
}

// workerWithVolume mounts the volume key in the worker, declared as decl
// under the top-level volumes (the last section of a stack).
func workerWithVolume(t *testing.T, yaml, key, decl string) string {
	t.Helper()
	yaml = replaceOnce(t, yaml, "      - workerdata:/data\n", "      - workerdata:/data\n      - "+key+":/"+key+":ro\n")
	return yaml + decl
}

func replaceOnce(t *testing.T, s, old, new string) string {
	t.Helper()
	if !strings.Contains(s, old) {
		t.Fatalf("compose file has no %q:\n%s", old, s)
	}
	return strings.Replace(s, old, new, 1)
}

// createPlainNetwork is `docker network create name`: no compose labels.
func createPlainNetwork(t *testing.T, cli *client.Client, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := cli.NetworkCreate(ctx, name, client.NetworkCreateOptions{}); err != nil {
		t.Fatalf("docker network create %s: %v", name, err)
	}
}

// assertPlainNetwork fails unless the network is still there, unlabelled
// and unused: lockstep neither adopted nor replaced it.
func assertPlainNetwork(t *testing.T, cli *client.Client, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := cli.NetworkInspect(ctx, name, client.NetworkInspectOptions{})
	if err != nil {
		t.Fatalf("network %s: %v", name, err)
	}
	if n := res.Network; len(n.Labels) != 0 || len(n.Containers) != 0 {
		t.Errorf("network %s was touched: labels %v, containers %d", name, n.Labels, len(n.Containers))
	}
}

func removeNetwork(t *testing.T, cli *client.Client, name string) {
	if name == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := cli.NetworkRemove(ctx, name, client.NetworkRemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
		t.Errorf("cleanup: remove network %s: %v", name, err)
	}
}
