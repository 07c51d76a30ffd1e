package demo

import (
	"archive/tar"
	"context"
	"debug/elf"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/google/go-containerregistry/pkg/name"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/gitsource"
)

func TestHandler(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "worker.toml")
	if err := os.WriteFile(cfg, []byte("queue = \"jobs\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		method string
		env    map[string]string
		code   int
		body   string
	}{
		{"version only", http.MethodGet, map[string]string{EnvVersion: "v2"}, 200, "lockstep demo, version v2\n"},
		{"with config", http.MethodGet, map[string]string{EnvVersion: "v1", EnvConfig: cfg}, 200,
			"lockstep demo, version v1\nconfig " + cfg + ":\nqueue = \"jobs\"\n"},
		{"config missing", http.MethodGet, map[string]string{EnvVersion: "v1", EnvConfig: "/nonexistent/x.toml"}, 200,
			"lockstep demo, version v1\nconfig /nonexistent/x.toml: open /nonexistent/x.toml: no such file or directory\n"},
		{"no version", http.MethodGet, nil, 200, "lockstep demo, version (VERSION not set)\n"},
		{"post refused", http.MethodPost, map[string]string{EnvVersion: "v1"}, 405, "only GET\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := Handler(func(k string) string { return tt.env[k] })
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tt.method, "/", nil))
			if rec.Code != tt.code || rec.Body.String() != tt.body {
				t.Errorf("got %d %q, want %d %q", rec.Code, rec.Body.String(), tt.code, tt.body)
			}
		})
	}
}

func TestServeStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, "127.0.0.1:0", func(string) string { return "" })
	}()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve after cancel: %v", err)
	}
	if err := Serve(context.Background(), "127.0.0.1:-1", nil); err == nil || !strings.Contains(err.Error(), "listen on 127.0.0.1:-1") {
		t.Errorf("Serve on a bad address: %v, want an error naming it", err)
	}
}

// staticBinary builds a tiny Go program with cgo off: a static executable.
func staticBinary(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build a static test binary: %v", err)
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	if err := os.WriteFile(src, []byte("package main\n\nfunc main() {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "static")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", out, src)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build a static binary: %v\n%s", err, b)
	}
	return out
}

func TestRuntimeFiles(t *testing.T) {
	t.Run("static", func(t *testing.T) {
		interp, libs, err := RuntimeFiles(staticBinary(t))
		if err != nil || interp != "" || len(libs) != 0 {
			t.Fatalf("RuntimeFiles(static) = %q, %v, %v; want nothing needed", interp, libs, err)
		}
	})
	t.Run("dynamic", func(t *testing.T) {
		// The shell is dynamically linked on every distribution this runs
		// on; if it is not, there is nothing to resolve and the test says so.
		sh, err := exec.LookPath("sh")
		if err != nil {
			t.Fatal(err)
		}
		sh, _ = filepath.EvalSymlinks(sh)
		f, err := elf.Open(sh)
		if err != nil {
			t.Fatal(err)
		}
		needed, _ := f.ImportedLibraries()
		f.Close()
		if len(needed) == 0 {
			t.Fatalf("%s is static on this host; this test needs a dynamically linked program", sh)
		}
		interp, libs, err := RuntimeFiles(sh)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(interp); err != nil {
			t.Errorf("interpreter %q: %v", interp, err)
		}
		var bases []string
		for _, l := range libs {
			if !filepath.IsAbs(l) {
				t.Errorf("library path %q is not absolute", l)
			}
			lf, err := elf.Open(l)
			if err != nil {
				t.Errorf("library %s: %v", l, err)
				continue
			}
			if lf.Class != elf.ELFCLASS64 && lf.Class != elf.ELFCLASS32 {
				t.Errorf("library %s: class %v", l, lf.Class)
			}
			lf.Close()
			bases = append(bases, filepath.Base(l))
		}
		for _, n := range needed {
			if !slices.Contains(bases, n) {
				t.Errorf("needed library %s not resolved; got %v", n, libs)
			}
		}
	})
	t.Run("not an executable", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "script")
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		_, _, err := RuntimeFiles(p)
		if err == nil || !strings.Contains(err.Error(), "not a Linux executable") {
			t.Errorf("RuntimeFiles(script) = %v, want a 'not a Linux executable' error", err)
		}
	})
}

func TestFindLibraryMissing(t *testing.T) {
	_, _, err := findLibrary("libnothere.so.9", []string{t.TempDir()}, elf.ELFCLASS64, elf.EM_X86_64)
	if err == nil || !strings.Contains(err.Error(), "libnothere.so.9") {
		t.Errorf("findLibrary of a missing library = %v, want an error naming it", err)
	}
}

// layerEntries reads a tar into name -> header, in order.
func layerEntries(t *testing.T, r io.Reader) ([]string, map[string]*tar.Header, map[string][]byte) {
	t.Helper()
	tr := tar.NewReader(r)
	var order []string
	hdrs := map[string]*tar.Header{}
	bodies := map[string][]byte{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		order = append(order, h.Name)
		hdrs[h.Name] = h
		bodies[h.Name] = b
	}
	return order, hdrs, bodies
}

func TestBuildLayer(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	lib := filepath.Join(dir, "libc.so.6")
	for p, body := range map[string]string{bin: "binary", lib: "libc"} {
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data, err := buildLayer([]layerFile{
		{Path: "/lockstep", Source: bin},
		{Path: "/lib/x86_64-linux-gnu/libc.so.6", Source: lib},
		{Path: "/lib64/ld-linux-x86-64.so.2", Source: lib},
	})
	if err != nil {
		t.Fatal(err)
	}
	order, hdrs, bodies := layerEntries(t, strings.NewReader(string(data)))
	want := []string{"tmp/", "lib/", "lib/x86_64-linux-gnu/", "lib64/", "lockstep", "lib/x86_64-linux-gnu/libc.so.6", "lib64/ld-linux-x86-64.so.2"}
	if !slices.Equal(order, want) {
		t.Fatalf("layer entries %v, want %v", order, want)
	}
	if string(bodies["lockstep"]) != "binary" || hdrs["lockstep"].Mode != 0o755 {
		t.Errorf("lockstep entry: %q mode %o", bodies["lockstep"], hdrs["lockstep"].Mode)
	}
	if hdrs["tmp/"].Mode != 0o1777 {
		t.Errorf("tmp mode %o, want 1777", hdrs["tmp/"].Mode)
	}
	if _, err := buildLayer([]layerFile{{Path: "/x", Source: filepath.Join(dir, "missing")}}); err == nil {
		t.Error("buildLayer with a missing source: no error")
	}
}

func TestBuildImages(t *testing.T) {
	for _, tc := range []struct {
		name    string
		bin     func(t *testing.T) string
		dynamic bool
	}{
		{"static", staticBinary, false},
		{"dynamic", func(t *testing.T) string {
			sh, err := exec.LookPath("sh")
			if err != nil {
				t.Fatal(err)
			}
			sh, _ = filepath.EvalSymlinks(sh)
			return sh
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bin := tc.bin(t)
			imgs, err := BuildImages(bin, "lockstep-demo-0123abcd")
			if err != nil {
				t.Fatal(err)
			}
			wantRefs := []string{"lockstep-demo-0123abcd/web:v1", "lockstep-demo-0123abcd/web:v2", "lockstep-demo-0123abcd/worker:v1"}
			if !slices.Equal(imgs.Refs, wantRefs) {
				t.Fatalf("refs %v, want %v", imgs.Refs, wantRefs)
			}
			if (imgs.Interpreter != "") != tc.dynamic {
				t.Errorf("interpreter %q for a %s binary", imgs.Interpreter, tc.name)
			}
			digests := map[string]string{}
			for ref, img := range imgs.images {
				cf, err := img.ConfigFile()
				if err != nil {
					t.Fatal(err)
				}
				tag := ref.(name.Tag)
				if !slices.Equal(cf.Config.Entrypoint, []string{BinPath, "demo-serve"}) {
					t.Errorf("%s entrypoint %v", ref, cf.Config.Entrypoint)
				}
				if !slices.Contains(cf.Config.Env, "VERSION="+tag.TagStr()) {
					t.Errorf("%s env %v, want VERSION=%s", ref, cf.Config.Env, tag.TagStr())
				}
				hasLD := slices.ContainsFunc(cf.Config.Env, func(e string) bool { return strings.HasPrefix(e, "LD_LIBRARY_PATH=") })
				if hasLD != tc.dynamic {
					t.Errorf("%s env %v: LD_LIBRARY_PATH set = %v for a %s binary", ref, cf.Config.Env, hasLD, tc.name)
				}
				d, _ := img.Digest()
				digests[tag.String()] = d.String()

				layers, err := img.Layers()
				if err != nil || len(layers) != 1 {
					t.Fatalf("%s: %d layers, %v", ref, len(layers), err)
				}
				rc, err := layers[0].Compressed()
				if err != nil {
					t.Fatal(err)
				}
				_, hdrs, _ := layerEntries(t, rc)
				rc.Close()
				want := []string{strings.TrimPrefix(BinPath, "/")}
				if tc.dynamic {
					want = append(want, strings.TrimPrefix(imgs.Interpreter, "/"))
					for _, l := range imgs.Libraries {
						want = append(want, strings.TrimPrefix(l, "/"))
					}
				}
				for _, w := range want {
					if hdrs[w] == nil || hdrs[w].Typeflag != tar.TypeReg {
						t.Errorf("%s: layer lacks the file %s", ref, w)
					}
				}
			}
			// web:v1 and worker:v1 are one image under two names; v2 differs.
			if digests[wantRefs[0]] != digests[wantRefs[2]] || digests[wantRefs[0]] == digests[wantRefs[1]] {
				t.Errorf("digests %v: want web:v1 == worker:v1 != web:v2", digests)
			}
		})
	}
}

// headFile reads path at the branch head of the repository at dir.
func headFile(t *testing.T, dir, path string) string {
	t.Helper()
	r, err := git.PlainOpen(dir)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := r.Reference(plumbing.NewBranchReferenceName(Branch), true)
	if err != nil {
		t.Fatal(err)
	}
	c, err := r.CommitObject(ref.Hash())
	if err != nil {
		t.Fatal(err)
	}
	f, err := c.File(path)
	if err != nil {
		t.Fatalf("%s at %s: %v", path, ref.Hash(), err)
	}
	s, err := f.Contents()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRepoStory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	repo, base, err := InitRepo(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"compose.yaml", "worker/worker.toml", "README.md"} {
		headFile(t, dir, p)
	}
	rel, err := repo.Release("release", base)
	if err != nil {
		t.Fatal(err)
	}
	pin, err := gitsource.ParsePin(PinPath, []byte(headFile(t, dir, PinPath)))
	if err != nil || pin.Commit != base {
		t.Fatalf("pin at %s: %+v, %v; want commit %s", rel, pin, err, base)
	}

	before := headFile(t, dir, "compose.yaml")
	if _, err := repo.SetWebTag("v2"); err != nil {
		t.Fatal(err)
	}
	after := headFile(t, dir, "compose.yaml")
	wantAfter := strings.Replace(before, "${DEMO_IMAGES}/web:v1", "${DEMO_IMAGES}/web:v2", 1)
	if after != wantAfter || after == before {
		t.Errorf("compose.yaml after SetWebTag:\n%s\nwant:\n%s", after, wantAfter)
	}
	if !strings.Contains(after, "${DEMO_IMAGES}/worker:v1") {
		t.Errorf("SetWebTag touched the worker:\n%s", after)
	}

	// A compose file whose web image line moved is an error, not a
	// silent no-op commit.
	if _, err := repo.Commit("break", map[string]string{"compose.yaml": "services:\n  web:\n    ports: []\n"}); err != nil {
		t.Fatal(err)
	}
	if _, err := repo.SetWebTag("v3"); err == nil || !strings.Contains(err.Error(), "compose.yaml") {
		t.Errorf("SetWebTag without the image line = %v, want an error naming compose.yaml", err)
	}
}

// TestEmbeddedStackLoads loads the embedded compose file the way a pass
// does, with the host env file the demo writes: the stack must be what the
// story says.
func TestEmbeddedStackLoads(t *testing.T) {
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "repo")
	if _, _, err := InitRepo(dir); err != nil {
		t.Fatal(err)
	}
	hostEnv := filepath.Join(tmp, "host.env")
	if err := os.WriteFile(hostEnv, []byte(VarImages+"=lockstep-demo-0123abcd\n"+VarPort+"=41234\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := compose.Load(context.Background(), compose.LoadOptions{
		ReleaseDir:   dir,
		Project:      "lockstep-demo-0123abcd",
		Environment:  Environment,
		Commit:       strings.Repeat("a", 40),
		HostEnvFiles: []string{hostEnv},
	})
	if err != nil {
		t.Fatal(err)
	}
	web, worker := p.Service("web"), p.Service("worker")
	if web == nil || worker == nil || len(p.Services) != 2 {
		t.Fatalf("services %v, want web and worker", p.Services)
	}
	if web.Image != "lockstep-demo-0123abcd/web:v1" || worker.Image != "lockstep-demo-0123abcd/worker:v1" {
		t.Errorf("images %s, %s", web.Image, worker.Image)
	}
	if web.PullPolicy != compose.PullNever || worker.PullPolicy != compose.PullNever {
		t.Errorf("pull policies %s, %s: the demo must never pull", web.PullPolicy, worker.PullPolicy)
	}
	if !web.PublishesPorts {
		t.Error("web publishes no port")
	}
	bindings := web.Host.PortBindings
	found := false
	for _, bs := range bindings {
		for _, b := range bs {
			found = found || (b.HostIP.String() == "127.0.0.1" && b.HostPort == "41234")
		}
	}
	if !found {
		t.Errorf("web port bindings %v, want 127.0.0.1:41234", bindings)
	}
	if len(worker.Files) != 1 || worker.Files[0].Path != "worker/worker.toml" {
		t.Errorf("worker files %v, want worker/worker.toml", worker.Files)
	}
	if len(web.Files) != 0 {
		t.Errorf("web files %v, want none (a worker config change must not recreate web)", web.Files)
	}
}

// TestRepoOrigin checks that once the repository has an origin, every
// commit reaches it: the agent watches the origin, so a commit that stayed
// in the worktree would never be deployed.
func TestRepoOrigin(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skipf("SKIPPED: pushing to the demo origin runs git-receive-pack and git is not on PATH: %v", err)
	}
	t.Setenv("GIT_CONFIG_GLOBAL", "/dev/null")
	t.Setenv("GIT_CONFIG_NOSYSTEM", "1")
	tmp := t.TempDir()
	repo, base, err := InitRepo(filepath.Join(tmp, "repo"))
	if err != nil {
		t.Fatal(err)
	}
	origin := filepath.Join(tmp, "origin.git")
	if err := repo.AddOrigin(origin); err != nil {
		t.Fatal(err)
	}
	originHead := func() string {
		t.Helper()
		r, err := git.PlainOpen(origin)
		if err != nil {
			t.Fatal(err)
		}
		ref, err := r.Reference(plumbing.NewBranchReferenceName(Branch), true)
		if err != nil {
			t.Fatalf("origin %s: %v", origin, err)
		}
		return ref.Hash().String()
	}
	if got := originHead(); got != base {
		t.Errorf("origin after AddOrigin at %s, want %s", got, base)
	}
	rel, err := repo.Release("release", base)
	if err != nil {
		t.Fatal(err)
	}
	if got := originHead(); got != rel {
		t.Errorf("origin after the release at %s, want %s", got, rel)
	}
	if got := headFile(t, origin, PinPath); got != PinFile(base) {
		t.Errorf("pin at the origin:\n%s\nwant:\n%s", got, PinFile(base))
	}
	v2, err := repo.SetWebTag("v2")
	if err != nil {
		t.Fatal(err)
	}
	if got := originHead(); got != v2 {
		t.Errorf("origin after web v2 at %s, want %s", got, v2)
	}
	if err := repo.AddOrigin(origin); err == nil {
		t.Error("a second AddOrigin succeeded; want an error (the origin exists)")
	}
}
