package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/lockstep-gitops/lockstep/e2e/harness"
	"github.com/lockstep-gitops/lockstep/reconcile"
)

// networkStack is web and db on one project network, backend; db has the
// alias "database" there besides its service name.
func networkStack(webImage, dbImage string) string {
	return fmt.Sprintf(`services:
  web:
    image: %s
    depends_on:
      db:
        condition: service_healthy
    networks: [backend]
  db:
    image: %s
    healthcheck:
      test: ["CMD", "/app", "healthcheck"]
      interval: 1s
      timeout: 3s
      retries: 30
    networks:
      backend:
        aliases: [database]
networks:
  backend: {}
`, webImage, dbImage)
}

// TestNetworkDrift: a container taken off its network by hand, and a
// project network removed by hand (with its containers running, or one of
// them stopped), are drift. The plan says so with the
// reason, apply re-wires the containers in place (same IDs, never
// restarted) with the compose aliases, a re-created network gets every
// container back in the same pass, and the next plan is empty.
func TestNetworkDrift(t *testing.T) {
	f := newFixture(t)
	cli := harness.RequireDocker(t)
	docker := harness.RequireTool(t, "docker", "docker.io")
	f.release("web and db on backend", map[string]string{
		"compose.yaml": networkStack(f.images["web:a"], f.images["db:a"]),
	})
	f.apply()
	backend := f.project + "_backend"
	w0 := world(t, cli, f.project)
	reachable(t, docker, w0["web"].Name, "http://database:8080/version", "a")

	// 1. db disconnected by hand: web cannot reach it, the plan says why.
	disconnectByHand(t, cli, backend, w0["db"].ID)
	if out, ok := fetchFrom(t, docker, w0["web"].Name, "http://database:8080/version"); ok {
		t.Fatalf("web still reaches db after the disconnect: %q", out)
	}
	acts, _ := changes(f.plan())
	if len(acts) != 1 || acts[0].Kind != reconcile.ActReconnect || acts[0].Service != "db" || !acts[0].Drift ||
		strings.Join(acts[0].Reasons, "; ") != "not on network "+backend {
		t.Fatalf("plan after db was disconnected by hand: %+v", acts)
	}
	if text := f.lockstep("plan", "e2e"); !strings.Contains(text.stdout, "~ reconnect db ("+f.project+"-db-1) [drift]\n      not on network "+backend+"\n") {
		t.Errorf("plan text does not show the reconnect with its reason:\n%s", text.stdout)
	}
	f.apply()
	w1 := world(t, cli, f.project)
	sameWorld(t, w0, w1) // db re-wired in place; web untouched
	checkWiring(t, cli, backend, w1, map[string][]string{"db": {"database", "db"}, "web": {"web"}})
	reachable(t, docker, w1["web"].Name, "http://database:8080/version", "a")
	if p := f.plan(); !p.Empty() {
		t.Fatalf("plan after the repair is not empty: %+v", p.Actions)
	}

	// 2. The network removed by hand (its containers disconnected first, as
	// the engine requires): one apply creates it and reconnects both.
	disconnectByHand(t, cli, backend, w1["web"].ID)
	disconnectByHand(t, cli, backend, w1["db"].ID)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := cli.NetworkRemove(ctx, backend, client.NetworkRemoveOptions{}); err != nil {
		t.Fatal(err)
	}
	p := f.plan()
	if len(p.Actions) == 0 || p.Actions[0].Kind != reconcile.ActCreateNetwork || p.Actions[0].Network != backend {
		t.Fatalf("plan after the network was removed does not create it first: %+v", p.Actions)
	}
	acts, _ = changes(p)
	var got []string
	for _, a := range acts {
		got = append(got, fmt.Sprintf("%s %s: %s drift=%v", a.Kind, a.Service, strings.Join(a.Reasons, "; "), a.Drift))
	}
	want := []string{
		"reconnect db: not on network " + backend + " drift=true",
		"reconnect web: not on network " + backend + " drift=true",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("plan after the network was removed:\n got %q\nwant %q", got, want)
	}
	f.apply()
	w2 := world(t, cli, f.project)
	sameWorld(t, w1, w2)
	checkWiring(t, cli, backend, w2, map[string][]string{"db": {"database", "db"}, "web": {"web"}})
	reachable(t, docker, w2["web"].Name, "http://database:8080/version", "a")
	reachable(t, docker, w2["db"].Name, "http://web:8080/version", "a")
	if p := f.plan(); !p.Empty() {
		t.Fatalf("plan after the network was re-created is not empty: %+v", p.Actions)
	}

	// 3. The network removed while db was stopped: db keeps an endpoint on
	// the network that is gone, which the engine cannot start it with.
	// Apply drops that endpoint, connects db to the new network, then
	// starts it.
	if _, err := cli.ContainerStop(ctx, w2["db"].ID, client.ContainerStopOptions{}); err != nil {
		t.Fatal(err)
	}
	disconnectByHand(t, cli, backend, w2["web"].ID)
	if _, err := cli.NetworkRemove(ctx, backend, client.NetworkRemoveOptions{}); err != nil {
		t.Fatal(err)
	}
	acts, _ = changes(f.plan())
	got = nil
	for _, a := range acts {
		got = append(got, fmt.Sprintf("%s %s", a.Kind, a.Service))
	}
	if want := []string{"reconnect db", "start db", "reconnect web"}; !slices.Equal(got, want) {
		t.Fatalf("plan after the network was removed under a stopped db: %q, want %q", got, want)
	}
	if r := acts[0].Reasons; len(r) != 1 || !strings.HasPrefix(r[0], "on a network "+backend+" that was removed") {
		t.Errorf("reason of db's reconnect: %q", r)
	}
	f.apply()
	w3 := world(t, cli, f.project)
	sameWorld(t, map[string]box{"web": w2["web"]}, map[string]box{"web": w3["web"]})
	if w3["db"].ID != w2["db"].ID || w3["db"].State != "running" {
		t.Errorf("db after the repair: %s %s, want %s running again", w3["db"].ID[:12], w3["db"].State, w2["db"].ID[:12])
	}
	checkWiring(t, cli, backend, w3, map[string][]string{"db": {"database", "db"}, "web": {"web"}})
	reachable(t, docker, w3["web"].Name, "http://database:8080/version", "a")
	if p := f.plan(); !p.Empty() {
		t.Fatalf("plan after the repair under a stopped db is not empty: %+v", p.Actions)
	}
}

// disconnectByHand plays the operator who runs `docker network disconnect`.
func disconnectByHand(t *testing.T, cli *client.Client, network, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := cli.NetworkDisconnect(ctx, network, client.NetworkDisconnectOptions{Container: id, Force: true}); err != nil {
		t.Fatalf("docker network disconnect %s %s: %v", network, id[:12], err)
	}
}

// checkWiring fails unless each service's container is attached to network
// (the one of that name now, by ID) with exactly the aliases the compose
// file gives it (sorted), besides the container's short ID the engine adds.
func checkWiring(t *testing.T, cli *client.Client, network string, w map[string]box, aliases map[string][]string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, err := cli.NetworkInspect(ctx, network, client.NetworkInspectOptions{})
	if err != nil {
		t.Fatalf("network %s: %v", network, err)
	}
	for svc, want := range aliases {
		b := w[svc]
		ep := b.inspect.NetworkSettings.Networks[network]
		if ep == nil {
			t.Errorf("%s is not on %s: %v", b.Name, network, sortedEndpoints(b))
			continue
		}
		if ep.NetworkID != n.Network.ID {
			t.Errorf("%s is on network %s, want %s (the current %s)", b.Name, ep.NetworkID[:12], n.Network.ID[:12], network)
		}
		// Left out: the short ID engines before API 1.45 add, and the
		// container's own name, which lockstep adds as Compose does (the
		// embedded DNS resolves it anyway).
		got := slices.DeleteFunc(slices.Clone(ep.Aliases), func(a string) bool { return a == b.ID[:12] || a == b.Name })
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s on %s: aliases %v, want %v", b.Name, network, got, want)
		}
	}
}

func sortedEndpoints(b box) []string {
	var names []string
	for n := range b.inspect.NetworkSettings.Networks {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// fetchFrom runs the test app's HTTP client inside container (which shares
// that container's network namespace and DNS) once.
func fetchFrom(t *testing.T, docker, container, url string) (string, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, docker, "exec", container, "/app", "get", url)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return strings.TrimSpace(errb.String()), false
	}
	return strings.TrimSpace(out.String()), true
}

// reachable waits until url answers want from inside container.
func reachable(t *testing.T, docker, container, url, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, ok := fetchFrom(t, docker, container, url)
		if ok && got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("from %s, %s: %q (ok=%v), want %q", container, url, got, ok, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
