// Package harness is what lockstep's integration tests share to run against
// the real Docker engine: a client that skips loudly without an engine, an
// in-process registry the daemon pulls from, the test application packed
// into images, and cleanup that leaves nothing behind.
//
// It owns test fixtures only. It must never be imported by non-test code,
// never pull from or push to a registry outside this process, and never
// touch engine objects that do not carry the test's own project label or
// registry address.
package harness

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/moby/moby/client"
)

// LabelProject is the compose project label every object a test creates
// carries; CleanupProject finds leftovers by it.
const LabelProject = "com.docker.compose.project"

// testappPackage is built by TestAppBinary.
const testappPackage = "github.com/lockstep-gitops/lockstep/e2e/testapp"

// RequireDocker returns a client for the local engine (DOCKER_HOST or the
// default socket, API version negotiated). Without a reachable engine the
// test is skipped with a loud message, unless CI=true, where a missing
// engine is a failure: CI must never go green by skipping.
func RequireDocker(t testing.TB) *client.Client {
	t.Helper()
	cli, err := client.New(client.FromEnv)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err = cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true})
		cancel()
		if err != nil {
			cli.Close()
		}
	}
	if err != nil {
		msg := fmt.Sprintf("NO DOCKER ENGINE: %v. This integration test needs a real Docker engine (DOCKER_HOST or /var/run/docker.sock)", err)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg + "; CI=true makes this a failure")
		}
		t.Skip("SKIPPED LOUDLY: " + msg + "; set CI=true to make this a failure")
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// RequireTool returns the path of a program a test (or benchmark) runs for
// real, such as gpg or ssh-keygen. Without it the test is skipped with a
// loud message naming the Debian package to install, unless CI=true, where
// it fails: .ci/run installs what the tests need, and CI must never go
// green by skipping.
func RequireTool(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	msg := fmt.Sprintf("the %s command is not installed (Debian package %s); this test runs the real tool", name, pkg)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + "; CI=true makes this a failure")
	}
	t.Skip("SKIPPED LOUDLY: " + msg + "; apt-get install " + pkg + " to run it")
	return ""
}

// StartRegistry serves go-containerregistry's in-memory registry on
// 127.0.0.1:0 and returns "127.0.0.1:PORT". The daemon treats 127.0.0.0/8
// as insecure, so it pulls from it over plain HTTP. Stopped at cleanup,
// after the requests in flight have finished.
//
// Every test image shares one layer (the testapp binary), and the daemon
// shares a layer download between concurrent pulls by digest, whatever
// registry each pull names. A test that makes its registry fail must fail
// only blobs unique to it (the image config), or other tests' pulls stall
// on its retries.
func StartRegistry(t testing.TB) string {
	t.Helper()
	srv := httptest.NewServer(Registry())
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// StartRegistryOn is StartRegistry listening on ip:0 instead, for engines
// that reach the test process at another address than 127.0.0.1 (the
// nodes of e2e/swarmtest's swarm, each in a network namespace of its own).
// It returns "IP:PORT"; the engines must trust ip as an insecure registry.
func StartRegistryOn(t testing.TB, ip string) string {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatalf("start a registry on %s: %v", ip, err)
	}
	srv := httptest.NewUnstartedServer(Registry())
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// Registry is go-containerregistry's in-memory registry, its error
// responses typed as the distribution spec has them. Its errors carry the
// spec's JSON body ({"errors":[{"code":"MANIFEST_UNKNOWN",...}]}) without a
// Content-Type, and the engines that pull through docker/distribution's
// client (Docker 26, Docker 29 on overlay2) parse that body only when the
// response says it is JSON: otherwise a missing tag comes back as
// `unknown: {"errors":...`, not as not found.
func Registry() http.Handler {
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reg.ServeHTTP(jsonErrors{w}, r)
	})
}

// jsonErrors marks an error response as JSON unless its writer already
// said what it is.
type jsonErrors struct{ http.ResponseWriter }

func (w jsonErrors) WriteHeader(code int) {
	if code >= 400 && w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
	}
	w.ResponseWriter.WriteHeader(code)
}

// testapp is built once per test process; every image packs the same layer.
var testapp struct {
	once  sync.Once
	path  string
	layer []byte // gzipped tar holding /app, /tmp and /data
	err   error
}

// TestAppBinary builds e2e/testapp (static, CGO_ENABLED=0, -trimpath) once
// per test process and returns its path.
func TestAppBinary(t testing.TB) string {
	t.Helper()
	buildTestApp()
	if testapp.err != nil {
		t.Fatal(testapp.err)
	}
	return testapp.path
}

func buildTestApp() {
	testapp.once.Do(func() {
		testapp.path, testapp.err = goBuildTestApp()
		if testapp.err == nil {
			testapp.layer, testapp.err = appLayer(testapp.path)
		}
	})
}

// goBuildTestApp builds into a cache directory keyed by the module root,
// through a temporary file renamed into place, so concurrent test processes
// (go test ./...) never see a half-written binary and runs do not
// accumulate binaries in /tmp.
func goBuildTestApp() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("build testapp: the go command must be on PATH: %w", err)
	}
	gomod, err := exec.CommandContext(ctx, goBin, "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("build testapp: go env GOMOD: %w", err)
	}
	sum := sha256.Sum256(bytes.TrimSpace(gomod))
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "lockstep-testapp", hex.EncodeToString(sum[:6]))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("build testapp: %w", err)
	}
	tmp, err := os.CreateTemp(dir, "app-*.tmp")
	if err != nil {
		return "", fmt.Errorf("build testapp: %w", err)
	}
	tmp.Close()
	defer os.Remove(tmp.Name())

	cmd := exec.CommandContext(ctx, goBin, "build", "-trimpath", "-o", tmp.Name(), testappPackage)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("build testapp: go build %s: %w\n%s", testappPackage, err, out)
	}
	path := filepath.Join(dir, "app")
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", fmt.Errorf("build testapp: %w", err)
	}
	return path, nil
}

// appLayer packs the binary as /app plus the writable directories the app
// uses. Headers carry no timestamps or owners, so the layer digest depends
// only on the binary.
func appLayer(binPath string) ([]byte, error) {
	bin, err := os.ReadFile(binPath)
	if err != nil {
		return nil, fmt.Errorf("pack testapp: %w", err)
	}
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	epoch := time.Unix(0, 0)
	entries := []struct {
		hdr  tar.Header
		body []byte
	}{
		{tar.Header{Name: "data/", Typeflag: tar.TypeDir, Mode: 0o777, ModTime: epoch}, nil},
		// /tmp is sticky and world-writable like on any Linux host, so the
		// app can create /tmp/unhealthy whatever user it runs as.
		{tar.Header{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777, ModTime: epoch}, nil},
		{tar.Header{Name: "app", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bin)), ModTime: epoch}, bin},
	}
	for _, e := range entries {
		if err := tw.WriteHeader(&e.hdr); err != nil {
			return nil, fmt.Errorf("pack testapp: %w", err)
		}
		if _, err := tw.Write(e.body); err != nil {
			return nil, fmt.Errorf("pack testapp: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("pack testapp: %w", err)
	}
	if err := gz.Close(); err != nil {
		return nil, fmt.Errorf("pack testapp: %w", err)
	}
	return buf.Bytes(), nil
}

// ImageOptions is what varies between test images. Different Env or Labels
// give a different image config, hence a different digest.
type ImageOptions struct {
	Env    []string
	Labels map[string]string
}

// PushTestApp packs the test application into an image (entrypoint
// ["/app"], cmd ["serve"]) and pushes it to registry/repo:tag. It returns
// the full reference "127.0.0.1:PORT/repo:tag".
func PushTestApp(t testing.TB, registry, repo, tag string, opts ImageOptions) string {
	t.Helper()
	buildTestApp()
	if testapp.err != nil {
		t.Fatal(testapp.err)
	}
	ref := registry + "/" + repo + ":" + tag
	img, err := testAppImage(testapp.layer, opts)
	if err != nil {
		t.Fatalf("build image %s: %v", ref, err)
	}
	parsed, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := remote.Write(parsed, img, remote.WithContext(ctx)); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	return ref
}

func testAppImage(layer []byte, opts ImageOptions) (v1.Image, error) {
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layer)), nil
	})
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS = "linux"
	cf.Architecture = runtime.GOARCH
	cf.Config.Entrypoint = []string{"/app"}
	cf.Config.Cmd = []string{"serve"}
	cf.Config.Env = append([]string(nil), opts.Env...)
	cf.Config.Labels = opts.Labels
	return mutate.ConfigFile(img, cf)
}

var projectName = regexp.MustCompile(`[^a-z0-9_-]+`)

// UniqueProject returns "<prefix>-<8 hex>", a valid compose project name
// (lowercase letters, digits, '-' and '_', starting with a letter or digit)
// that no other test run uses. The prefix is sanitized; "" means "lst".
func UniqueProject(t testing.TB, prefix string) string {
	t.Helper()
	prefix = strings.Trim(projectName.ReplaceAllString(strings.ToLower(prefix), "-"), "-_")
	if prefix == "" {
		prefix = "lst"
	}
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return prefix + "-" + hex.EncodeToString(b[:])
}

// CleanupProject registers a cleanup that removes every container (forced,
// with its anonymous volumes), network and volume carrying the project
// label, the anonymous volumes its containers mounted (inherited ones too),
// and the local images tagged from registry (unless registry is ""). It
// then checks that nothing with the label is left and fails the test if
// something is.
func CleanupProject(t testing.TB, cli *client.Client, project string, registry string) {
	t.Helper()
	t.Cleanup(func() {
		// The test's own context is already cancelled when cleanups run.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		for _, err := range removeProject(ctx, cli, project, registry) {
			t.Errorf("cleanup of project %s: %v", project, err)
		}
		left, err := ProjectLeftovers(ctx, cli, project)
		if err != nil {
			t.Errorf("cleanup of project %s: %v", project, err)
		}
		if len(left) > 0 {
			t.Errorf("cleanup of project %s left: %s", project, strings.Join(left, ", "))
		}
	})
}

func projectFilter(project string) client.Filters {
	return make(client.Filters).Add("label", LabelProject+"="+project)
}

func removeProject(ctx context.Context, cli *client.Client, project, registry string) []error {
	var errs []error
	ctrs, err := cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: projectFilter(project)})
	if err != nil {
		return []error{fmt.Errorf("list containers: %w", err)}
	}
	// Anonymous volumes that a recreate handed from one container to the
	// next are mounted by name in the new one, so `rm -v` keeps them; note
	// them first to remove them explicitly.
	anon := map[string]bool{}
	for _, c := range ctrs.Items {
		for _, m := range c.Mounts {
			if m.Type == "volume" && isAnonymousName(m.Name) {
				anon[m.Name] = true
			}
		}
		_, err := cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
		if err != nil && !cerrdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove container %s: %w", c.ID, err))
		}
	}
	for v := range anon {
		err := removeVolumeIfUnlabelled(ctx, cli, v)
		if err != nil {
			errs = append(errs, err)
		}
	}
	nets, err := cli.NetworkList(ctx, client.NetworkListOptions{Filters: projectFilter(project)})
	if err != nil {
		errs = append(errs, fmt.Errorf("list networks: %w", err))
	} else {
		for _, n := range nets.Items {
			if _, err := cli.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("remove network %s: %w", n.Name, err))
			}
		}
	}
	vols, err := cli.VolumeList(ctx, client.VolumeListOptions{Filters: projectFilter(project)})
	if err != nil {
		errs = append(errs, fmt.Errorf("list volumes: %w", err))
	} else {
		for _, v := range vols.Items {
			if _, err := cli.VolumeRemove(ctx, v.Name, client.VolumeRemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("remove volume %s: %w", v.Name, err))
			}
		}
	}
	if registry != "" {
		errs = append(errs, removeRegistryImages(ctx, cli, registry)...)
	}
	return errs
}

var anonymousVolume = regexp.MustCompile(`^[0-9a-f]{64}$`)

func isAnonymousName(name string) bool { return anonymousVolume.MatchString(name) }

// LabelAnonymousVolume is the label modern engines (Docker 23 and later)
// put on every volume they create for a mount without a source, empty
// value; `docker volume prune` removes only volumes that carry it. It is
// the engine's own mark, not anybody's claim to the volume.
const LabelAnonymousVolume = "com.docker.volume.anonymous"

// removeVolumeIfUnlabelled removes an anonymous volume unless it carries
// labels other than the engine's own anonymous mark: a labelled volume
// belongs to somebody, and is not ours to judge.
func removeVolumeIfUnlabelled(ctx context.Context, cli *client.Client, name string) error {
	v, err := cli.VolumeInspect(ctx, name, client.VolumeInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("inspect anonymous volume %s: %w", name, err)
	}
	for k := range v.Volume.Labels {
		if k != LabelAnonymousVolume {
			return nil
		}
	}
	if _, err := cli.VolumeRemove(ctx, name, client.VolumeRemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("remove anonymous volume %s: %w", name, err)
	}
	return nil
}

// removeRegistryImages untags every local reference into registry. Removing
// by reference, never by ID, leaves alone an identical image another test
// pulled from its own registry.
func removeRegistryImages(ctx context.Context, cli *client.Client, registry string) []error {
	imgs, err := cli.ImageList(ctx, client.ImageListOptions{All: true})
	if err != nil {
		return []error{fmt.Errorf("list images: %w", err)}
	}
	var errs []error
	for _, img := range imgs.Items {
		refs := append(append([]string(nil), img.RepoTags...), img.RepoDigests...)
		for _, ref := range refs {
			if !strings.HasPrefix(ref, registry+"/") {
				continue
			}
			_, err := cli.ImageRemove(ctx, ref, client.ImageRemoveOptions{})
			if err != nil && !cerrdefs.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("remove image %s: %w", ref, err))
			}
		}
	}
	return errs
}

// ProjectLeftovers lists what still carries the project label: containers
// (including one-off ones), networks and volumes, as "kind name" strings.
func ProjectLeftovers(ctx context.Context, cli *client.Client, project string) ([]string, error) {
	var left []string
	var errs []error
	ctrs, err := cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: projectFilter(project)})
	errs = append(errs, err)
	for _, c := range ctrs.Items {
		left = append(left, "container "+strings.TrimPrefix(firstName(c.Names), "/"))
	}
	nets, err := cli.NetworkList(ctx, client.NetworkListOptions{Filters: projectFilter(project)})
	errs = append(errs, err)
	for _, n := range nets.Items {
		left = append(left, "network "+n.Name)
	}
	vols, err := cli.VolumeList(ctx, client.VolumeListOptions{Filters: projectFilter(project)})
	errs = append(errs, err)
	for _, v := range vols.Items {
		left = append(left, "volume "+v.Name)
	}
	if err := errors.Join(errs...); err != nil {
		return left, fmt.Errorf("list leftovers of project %s: %w", project, err)
	}
	return left, nil
}

func firstName(names []string) string {
	if len(names) == 0 {
		return ""
	}
	return names[0]
}
