package e2e

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/lockstep-gitops/lockstep/e2e/harness"
)

// nestedYAML is web bind-mounting ./src from the release with an
// anonymous volume, a tmpfs, a named volume and a file of the release
// (over one that is there) nested inside the bind, a read-only bind with
// an anonymous volume nested inside, a bind of a single file, and db
// beside it.
func nestedYAML(f *fixture, rev string) string {
	return fmt.Sprintf(`services:
  web:
    image: %[1]s
    volumes:
      - ./src:/srv/src
      - /srv/src/node_modules
      - type: tmpfs
        target: /srv/src/cache
      - webdata:/srv/src/lib/data
      - ./conf:/srv/conf:ro
      - /srv/conf/run
      - ./conf/app.ini:/srv/app.ini:ro
      - ./conf/app.ini:/srv/src/index.js:ro
  db:
    image: %[2]s
    environment:
      DATA_DIR: /data
      REV: %[3]q
volumes:
  webdata: {}
`, f.images["web:a"], f.images["db:a"], rev)
}

// treeOf lists the entries under dir as "path kind" lines, sorted.
func treeOf(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		kind := "file"
		if d.IsDir() {
			kind = "dir"
		}
		out = append(out, filepath.ToSlash(rel)+" "+kind)
		return nil
	})
	must(t, err)
	sort.Strings(out)
	return out
}

// Volumes, tmpfs and binds nested inside a bind mount from the release
// (./src:/srv/src plus /srv/src/node_modules) need a mount point inside the
// release directory. The engine must never create it there under a running
// container: the release stays as committed plus the mount points lockstep
// made before sealing it, a second pass plans nothing, and a commit that
// changes another service leaves web running.
func TestNestedMountsKeepReleaseImmutable(t *testing.T) {
	f := newFixture(t)
	cli := harness.RequireDocker(t)
	files := map[string]string{
		"src/index.js":          "console.log('hi')\n",
		"src/lib/util.js":       "module.exports = 1\n",
		"conf/app.ini":          "x = 1\n",
		"conf/nested/extra.ini": "y = 2\n",
	}
	files["compose.yaml"] = nestedYAML(f, "1")
	sha := f.release("nested mounts", files)
	f.apply()
	w1 := world(t, cli, f.project)
	if w1["web"].State != "running" {
		t.Fatalf("web is %s, want running", w1["web"].State)
	}
	release := filepath.Join(f.stateDir, "releases", sha)
	want := []string{
		"compose.yaml file",
		"conf dir", "conf/app.ini file", "conf/nested dir", "conf/nested/extra.ini file", "conf/run dir",
		"src dir", "src/cache dir", "src/index.js file", "src/lib dir", "src/lib/data dir", "src/lib/util.js file",
		"src/node_modules dir",
	}
	got := treeOf(t, release)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("release tree:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, d := range []string{"src/node_modules", "src/cache", "src/lib/data", "conf/run"} {
		fi, err := os.Stat(filepath.Join(release, d))
		if err == nil && fi.Mode().Perm() != 0o555 {
			t.Errorf("mount point %s has mode %04o, want 0555 like the rest of the release", d, fi.Mode().Perm())
		}
	}

	// A second pass plans nothing and touches nothing.
	if p := f.plan(); !p.Empty() {
		t.Fatalf("second plan is not empty: %+v", p.Actions)
	}
	r := f.apply()
	sameWorld(t, w1, world(t, cli, f.project))
	if strings.Contains(r.stderr, "modified by hand") {
		t.Errorf("the second pass found the release modified:\n%s", r.stderr)
	}
	nestedMounted(t, w1["web"], "/srv/src/node_modules", "/srv/src/cache", "/srv/src/lib/data", "/srv/conf/run", "/srv/src/index.js")
	manifest := filepath.Join(f.stateDir, "release-manifests", sha+".json")
	points := []string{"conf/run", "src/cache", "src/lib/data", "src/node_modules"}
	if got := manifestMountPoints(t, manifest); strings.Join(got, ",") != strings.Join(points, ",") {
		t.Errorf("manifest mount points %q, want %q", got, points)
	}

	// A release an older lockstep wrote (no manifest) whose mount points
	// the engine made: verified against git, the mount points are kept
	// and recorded, nothing is recreated and nothing unmounted.
	must(t, os.Remove(manifest))
	for _, d := range points {
		must(t, os.Chmod(filepath.Join(release, d), 0o755)) // as runc makes them
	}
	if p := f.plan(); !p.Empty() {
		t.Fatalf("plan after the manifest was removed is not empty: %+v", p.Actions)
	}
	f.apply()
	sameWorld(t, w1, world(t, cli, f.project))
	nestedMounted(t, w1["web"], "/srv/src/node_modules", "/srv/src/cache", "/srv/src/lib/data", "/srv/conf/run", "/srv/src/index.js")
	if got := manifestMountPoints(t, manifest); strings.Join(got, ",") != strings.Join(points, ",") {
		t.Errorf("manifest mount points after verifying against git %q, want %q", got, points)
	}
	for _, d := range points {
		if fi, err := os.Stat(filepath.Join(release, d)); err != nil || fi.Mode().Perm() != 0o555 {
			t.Errorf("mount point %s after verifying against git: %v %v, want mode 0555", d, fi, err)
		}
	}

	// A commit changing only db leaves web running.
	files["compose.yaml"] = nestedYAML(f, "2")
	f.release("db rev 2", map[string]string{"compose.yaml": files["compose.yaml"]})
	acts, _ := changes(f.plan())
	if len(acts) != 1 || acts[0].Service != "db" {
		t.Fatalf("plan for db rev 2: want only db, got %+v", acts)
	}
	f.apply()
	w2 := world(t, cli, f.project)
	if got := recreated(w1, w2); strings.Join(got, ",") != "db" {
		t.Fatalf("db rev 2 recreated %v, want only db", got)
	}
	nestedMounted(t, w2["web"], "/srv/src/node_modules", "/srv/src/cache", "/srv/src/lib/data", "/srv/conf/run", "/srv/src/index.js")
	if p := f.plan(); !p.Empty() {
		t.Fatalf("plan after db rev 2 is not empty: %+v", p.Actions)
	}
}

// nestedMounted fails unless each target is still a mount point in the
// container's mount namespace: a release "repaired" under a running
// container (its mount point directory removed on the host) detaches the
// mount inside.
func nestedMounted(t *testing.T, b box, targets ...string) {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", b.inspect.State.Pid))
	if err != nil {
		t.Logf("cannot read the mounts of %s (%v); not checked", b.Name, err)
		return
	}
	mounted := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		if fs := strings.Fields(line); len(fs) > 4 {
			mounted[fs[4]] = true
		}
	}
	for _, target := range targets {
		if !mounted[target] {
			t.Errorf("%s: %s is no longer mounted", b.Name, target)
		}
	}
}

// manifestMountPoints lists the entries of a release manifest marked as
// mount points.
func manifestMountPoints(t *testing.T, manifest string) []string {
	t.Helper()
	b, err := os.ReadFile(manifest)
	must(t, err)
	var m struct {
		Entries []struct {
			Path       string `json:"path"`
			MountPoint bool   `json:"mount_point"`
		} `json:"entries"`
	}
	must(t, json.Unmarshal(b, &m))
	var out []string
	for _, e := range m.Entries {
		if e.MountPoint {
			out = append(out, e.Path)
		}
	}
	sort.Strings(out)
	return out
}
