package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// box is what a test reads of one container of the project under test.
type box struct {
	ID, Name, Service, State, StartedAt string
	Labels                              map[string]string
	inspect                             container.InspectResponse
}

// world returns the project's containers by service name, read from the
// real engine. A service with more than one container fails the test:
// lockstep must never leave duplicates.
func world(t *testing.T, cli *client.Client, project string) map[string]box {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	list, err := cli.ContainerList(ctx, client.ContainerListOptions{
		All:     true,
		Filters: client.Filters{}.Add("label", "com.docker.compose.project="+project),
	})
	if err != nil {
		t.Fatalf("listing containers of %s: %v", project, err)
	}
	out := map[string]box{}
	for _, s := range list.Items {
		in, err := cli.ContainerInspect(ctx, s.ID, client.ContainerInspectOptions{})
		if err != nil {
			t.Fatalf("inspect %s: %v", s.ID, err)
		}
		c := in.Container
		svc := c.Config.Labels["com.docker.compose.service"]
		if prev, dup := out[svc]; dup {
			t.Fatalf("service %s has two containers: %s and %s", svc, prev.Name, c.Name)
		}
		out[svc] = box{
			ID: c.ID, Name: strings.TrimPrefix(c.Name, "/"), Service: svc,
			State: string(c.State.Status), StartedAt: c.State.StartedAt,
			Labels: c.Config.Labels, inspect: c,
		}
	}
	return out
}

// ids is the service -> container ID map of a world, for "nothing else was
// recreated" checks.
func ids(w map[string]box) map[string]string {
	m := map[string]string{}
	for s, b := range w {
		m[s] = b.ID
	}
	return m
}

// sameWorld fails unless before and after have the same containers, in the
// same state, never restarted in between.
func sameWorld(t *testing.T, before, after map[string]box) {
	t.Helper()
	if len(before) != len(after) {
		t.Fatalf("containers changed: before %v, after %v", ids(before), ids(after))
	}
	for svc, b := range before {
		a, ok := after[svc]
		if !ok {
			t.Fatalf("service %s lost its container %s", svc, b.Name)
		}
		if a.ID != b.ID || a.State != b.State || a.StartedAt != b.StartedAt {
			t.Fatalf("service %s touched: before %s %s started %s, after %s %s started %s",
				svc, b.ID[:12], b.State, b.StartedAt, a.ID[:12], a.State, a.StartedAt)
		}
	}
}

// hostPort returns the host port published for the container's port/tcp.
func hostPort(t *testing.T, b box, port string) string {
	t.Helper()
	for p, binds := range b.inspect.NetworkSettings.Ports {
		if p.String() == port+"/tcp" && len(binds) > 0 {
			return binds[0].HostPort
		}
	}
	t.Fatalf("container %s publishes no host port for %s/tcp", b.Name, port)
	return ""
}

// httpGet fetches url, retrying briefly while the server starts.
func httpGet(t *testing.T, url string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return strings.TrimSpace(string(body))
			}
			err = fmt.Errorf("status %s: %s", resp.Status, body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v", url, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// mountSource returns the host path bind-mounted at dest in the container.
func mountSource(t *testing.T, b box, dest string) string {
	t.Helper()
	for _, m := range b.inspect.Mounts {
		if m.Destination == dest {
			return m.Source
		}
	}
	t.Fatalf("container %s has nothing mounted at %s", b.Name, dest)
	return ""
}

// readFile reads a file the test expects to exist.
func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// volumeFile reads a file inside a named volume, from the host side (the
// engine runs on this host; the test runs as a user that can read it).
func volumeFile(t *testing.T, cli *client.Client, volume, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v, err := cli.VolumeInspect(ctx, volume, client.VolumeInspectOptions{})
	if err != nil {
		t.Fatalf("volume %s: %v", volume, err)
	}
	return readFile(t, filepath.Join(v.Volume.Mountpoint, name))
}

func volumeExists(t *testing.T, cli *client.Client, volume string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := cli.VolumeInspect(ctx, volume, client.VolumeInspectOptions{})
	return err == nil
}

func sortedKeys(m map[string]string) []string {
	var k []string
	for s := range m {
		k = append(k, s)
	}
	sort.Strings(k)
	return k
}
