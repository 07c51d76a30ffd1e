package harness

import (
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

func TestUniqueProject(t *testing.T) {
	valid := regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
	tests := []struct{ prefix, wantPrefix string }{
		{"", "lst-"},
		{"engine", "engine-"},
		{"Engine Test/1", "engine-test-1-"},
		{"--", "lst-"},
	}
	for _, tc := range tests {
		a, b := UniqueProject(t, tc.prefix), UniqueProject(t, tc.prefix)
		if a == b {
			t.Errorf("UniqueProject(%q) returned %q twice", tc.prefix, a)
		}
		if !valid.MatchString(a) || a[:len(tc.wantPrefix)] != tc.wantPrefix {
			t.Errorf("UniqueProject(%q) = %q, want a valid project name starting with %q", tc.prefix, a, tc.wantPrefix)
		}
	}
}

// TestPushedImagesDiffer checks the registry side alone: same binary,
// different env, different digests; same options, same digest.
func TestPushedImagesDiffer(t *testing.T) {
	reg := StartRegistry(t)
	v1a := PushTestApp(t, reg, "app", "v1", ImageOptions{Env: []string{"VERSION=v1"}})
	v1b := PushTestApp(t, reg, "app", "v1again", ImageOptions{Env: []string{"VERSION=v1"}})
	v2 := PushTestApp(t, reg, "app", "v2", ImageOptions{Env: []string{"VERSION=v2"}})
	digest := func(ref string) string {
		r, err := name.ParseReference(ref, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		d, err := remote.Head(r)
		if err != nil {
			t.Fatalf("head %s: %v", ref, err)
		}
		return d.Digest.String()
	}
	if digest(v1a) != digest(v1b) {
		t.Errorf("same options gave different digests: %s %s", v1a, v1b)
	}
	if digest(v1a) == digest(v2) {
		t.Errorf("VERSION=v1 and VERSION=v2 share digest %s", digest(v1a))
	}
}

// TestDaemonPullsAndCleanupRemoves runs the harness against the real engine:
// the daemon must pull from the in-process registry, run the image, and
// CleanupProject must leave nothing with the project label.
func TestDaemonPullsAndCleanupRemoves(t *testing.T) {
	cli := RequireDocker(t)
	reg := StartRegistry(t)
	project := UniqueProject(t, "harness")
	ref := PushTestApp(t, reg, "app", "v1", ImageOptions{Env: []string{"VERSION=v1", "EXIT_CODE=7"}})

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// Registered first, so it runs last: after CleanupProject's removal.
	t.Cleanup(func() {
		left, err := ProjectLeftovers(context.Background(), cli, project)
		if err != nil || len(left) > 0 {
			t.Errorf("after cleanup: leftovers %v, err %v", left, err)
		}
		imgs, err := cli.ImageList(context.Background(), client.ImageListOptions{All: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, img := range imgs.Items {
			for _, tag := range img.RepoTags {
				if tag == ref {
					t.Errorf("after cleanup: image %s still tagged", ref)
				}
			}
		}
	})
	CleanupProject(t, cli, project, reg)

	pull, err := cli.ImagePull(ctx, ref, client.ImagePullOptions{})
	if err != nil {
		t.Fatalf("daemon cannot pull %s from the in-process registry: %v", ref, err)
	}
	if err := pull.Wait(ctx); err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}

	labels := map[string]string{LabelProject: project}
	vol, err := cli.VolumeCreate(ctx, client.VolumeCreateOptions{Name: project + "_data", Labels: labels})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.NetworkCreate(ctx, project+"_default", client.NetworkCreateOptions{Labels: labels}); err != nil {
		t.Fatal(err)
	}
	created, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name: project + "-job-1",
		Config: &container.Config{
			Image: ref, Cmd: []string{"once"}, Labels: labels,
			Volumes: map[string]struct{}{"/anon": {}},
		},
		HostConfig: &container.HostConfig{Binds: []string{vol.Volume.Name + ":/data"}, NetworkMode: container.NetworkMode(project + "_default")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.ContainerStart(ctx, created.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
	wait := cli.ContainerWait(ctx, created.ID, client.ContainerWaitOptions{})
	select {
	case res := <-wait.Result:
		if res.StatusCode != 7 {
			t.Fatalf("testapp once exited %d, want EXIT_CODE=7 from the image env", res.StatusCode)
		}
	case err := <-wait.Error:
		t.Fatal(err)
	}
}

// TestRegistryErrorsAreJSON checks the registry speaks the distribution
// protocol the way an engine's pull client reads it: an unknown manifest is
// a 404 whose body is the spec's JSON error, typed as JSON.
func TestRegistryErrorsAreJSON(t *testing.T) {
	reg := StartRegistry(t)
	for _, path := range []string{"/v2/nothing/manifests/v1", "/v2/nothing/blobs/sha256:" + strings.Repeat("0", 64)} {
		resp, err := http.Get("http://" + reg + path)
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Errors []struct{ Code string } `json:"errors"`
		}
		decodeErr := json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		ct := resp.Header.Get("Content-Type")
		if resp.StatusCode != http.StatusNotFound || !strings.HasPrefix(ct, "application/json") || decodeErr != nil || len(body.Errors) != 1 || !strings.HasSuffix(body.Errors[0].Code, "_UNKNOWN") {
			t.Errorf("GET %s: %d, Content-Type %q, body %+v (%v); want 404, application/json, one *_UNKNOWN error", path, resp.StatusCode, ct, body, decodeErr)
		}
	}
}
