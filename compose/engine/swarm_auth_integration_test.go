package engine

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	swarmapi "github.com/moby/moby/api/types/swarm"

	"github.com/lockstep-gitops/lockstep/e2e/harness"
)

// TestSwarmResolveImageCredentials checks that ResolveImage sends the
// credentials lockstep's Docker config has for the image's registry, and
// that a registry refusing their absence is a denied error saying so; and
// that a service, created without credentials, cannot pull from it.
func TestSwarmResolveImageCredentials(t *testing.T) {
	f := requireSwarm(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var locked atomic.Bool // open while the test pushes
	reg := harness.Registry()
	addr := f.startRegistry(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); locked.Load() && (!ok || u != "ci" || p != "pw") {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	ref := harness.PushTestApp(t, addr, f.ns+"/private", "v1", harness.ImageOptions{})
	want := ref + "@" + registryDigest(t, ref)
	locked.Store(true)

	t.Setenv("DOCKER_CONFIG", t.TempDir())
	_, err := f.sw.ResolveImage(ctx, ref)
	if !errors.Is(err, cerrdefs.ErrUnauthenticated) || !strings.Contains(err.Error(), "denied access") {
		t.Fatalf("ResolveImage without credentials = %v, want a denied error", err)
	}

	dir := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte("ci:pw"))
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"auths":{"`+addr+`":{"auth":"`+auth+`"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", dir)
	got, err := f.sw.ResolveImage(ctx, ref)
	if err != nil || got != want {
		t.Fatalf("ResolveImage with credentials = %s, %v; want %s", got, err, want)
	}

	// A service sends no credentials: its node pulls anonymously, and is
	// refused.
	replicas := uint64(1)
	id, err := f.sw.CreateService(ctx, swarmapi.ServiceSpec{
		Annotations:  swarmapi.Annotations{Name: f.ns + "_private", Labels: f.labels()},
		TaskTemplate: swarmapi.TaskSpec{ContainerSpec: &swarmapi.ContainerSpec{Image: got}},
		Mode:         swarmapi.ServiceMode{Replicated: &swarmapi.ReplicatedService{Replicas: &replicas}},
	})
	mustNoErr(t, "create service", err)
	seen, task := f.firstTaskEnd(ctx, t, id)
	if task.State != string(swarmapi.TaskStateRejected) || !strings.Contains(task.Err, "no basic auth credentials") {
		t.Fatalf("the task of a private image went through %v and ended %+v, want rejected for want of credentials", seen, task)
	}
}
