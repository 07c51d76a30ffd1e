package compose

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestNestedMounts(t *testing.T) {
	refs := []mountRef{
		{key: "volumes", target: "/srv", source: "/rel/src"},
		{key: "volumes", target: "/srv/node_modules"},
		{key: "volumes", target: "/srv/lib", source: "/rel/lib"},
		{key: "tmpfs", target: "/srv/lib/cache"},
		{key: "volumes", target: "/srv/lib/cache/x"},
		{key: "volumes", target: "/srvx"},
		{key: "volumes", target: "/other"},
	}
	var got []string
	for _, n := range nestedMounts(refs) {
		got = append(got, n.inner.target+" in "+n.outer.target+" at "+n.sub)
	}
	want := []string{
		"/srv/node_modules in /srv at node_modules",
		"/srv/lib in /srv at lib",
		"/srv/lib/cache in /srv/lib at cache",
		"/srv/lib/cache/x in /srv/lib/cache at x",
	}
	if !slices.Equal(got, want) {
		t.Errorf("nestedMounts:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestMountPointsOfNestedMounts(t *testing.T) {
	compose := `services:
  app:
    image: a:1
    volumes:
      - ./src:/srv/src
      - /srv/src/node_modules
      - type: tmpfs
        target: /srv/src/deep/er/cache
      - data:/srv/src/lib/data
      - ./conf:/srv/conf:ro
      - /srv/conf/run
      - ./lib:/srv/src/lib
      - ./conf/app.ini:/srv/src/app.ini:ro
      - /srv/other
    tmpfs:
      - /srv/src/tmp:size=1m
    configs:
      - source: cfg
        target: /srv/src/index.js
  other:
    image: a:1
    volumes:
      - ./src:/src
volumes:
  data: {}
configs:
  cfg:
    file: ./conf/app.ini
`
	dir := writeRelease(t, map[string]string{
		"compose.yaml":    compose,
		"src/index.js":    "1\n",
		"src/app.ini":     "",
		"lib/util.js":     "2\n",
		"conf/app.ini":    "x = 1\n",
		"conf/run/.keep":  "",
		"src/tmp/.keep":   "",
		"src/deep/a.txt":  "a\n",
		"lib/data/readme": "in git\n",
	})
	p := load(t, testOptions(dir))
	// lib/data is in git already, but it is still a mount point (of the
	// data volume, nested in ./lib:/srv/src/lib, not in ./src).
	want := []string{"conf/run", "lib/data", "src/deep/er/cache", "src/lib", "src/node_modules", "src/tmp"}
	if !slices.Equal(p.MountPoints, want) {
		t.Errorf("MountPoints = %q, want %q", p.MountPoints, want)
	}
	// Nothing was created by the load itself.
	if _, err := os.Lstat(filepath.Join(dir, "src/node_modules")); err == nil {
		t.Errorf("Load created a mount point")
	}
}

func TestMountPointRefusals(t *testing.T) {
	base := "services:\n  app:\n    image: a:1\n    volumes:\n      - ./src:/srv\n"
	tests := []struct {
		name    string
		extra   string // appended to app's volumes
		files   map[string]string
		symlink [2]string // link (release-relative), target
		want    string
	}{
		{"parent is a file", "      - /srv/index.js/x\n", map[string]string{"src/index.js": "1"}, [2]string{}, "src/index.js is a file, not a directory"},
		{"mount point is a file", "      - /srv/index.js\n", map[string]string{"src/index.js": "1"}, [2]string{}, "src/index.js is a file, not a directory"},
		{"parent is a symlink", "      - /srv/l/node_modules\n", map[string]string{"src/index.js": "1", "src/real/x": "1"}, [2]string{"src/l", "real"}, "src/l is a symlink"},
		{"missing file mount point", "      - ./conf.ini:/srv/conf.ini:ro\n", map[string]string{"src/index.js": "1", "conf.ini": "x"}, [2]string{}, "add src/conf.ini (it may be empty) to the repository"},
		{"file on a directory", "      - ./conf.ini:/srv/d:ro\n", map[string]string{"src/d/x": "1", "conf.ini": "x"}, [2]string{}, "src/d is a directory, and a file is mounted there"},
		{"nested in a file bind", "      - ./conf.ini:/etc/app.ini\n      - /etc/app.ini/x\n", map[string]string{"src/index.js": "1", "conf.ini": "x"}, [2]string{}, "a file cannot hold a mount point"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.files["compose.yaml"] = base + tt.extra
			dir := writeRelease(t, tt.files)
			if tt.symlink[0] != "" {
				if err := os.Symlink(tt.symlink[1], filepath.Join(dir, tt.symlink[0])); err != nil {
					t.Fatal(err)
				}
			}
			le := loadErr(t, testOptions(dir))
			if le.Service != "app" || le.Key != "volumes" || le.File != "compose.yaml" || le.Line == 0 {
				t.Errorf("error does not name service app, key volumes in compose.yaml with a line: %#v", le)
			}
			assertContains(t, le.Error(), tt.want)
		})
	}
}

// A directory that holds only directories (a mount point, which git
// cannot hold) is left out of a directory's digest: a service's hash is
// the same before and after its mount points are made, and in a release
// an older lockstep wrote, where the engine made them.
func TestDigestLeavesOutMountPoints(t *testing.T) {
	compose := "services:\n  app:\n    image: a:1\n    volumes:\n      - ./src:/srv\n      - /srv/a/b/node_modules\n"
	dir := writeRelease(t, map[string]string{"compose.yaml": compose, "src/index.js": "1\n", "src/lib/x.js": "2\n"})
	before := load(t, testOptions(dir)).Services[0]
	if err := os.MkdirAll(filepath.Join(dir, "src/a/b/node_modules"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "src/lib/empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	after := load(t, testOptions(dir)).Services[0]
	if before.Hash != after.Hash || !slices.Equal(before.Files, after.Files) {
		t.Errorf("hash changed when mount points were made: %v -> %v", before.Files, after.Files)
	}
	// A file in one of them is content again.
	if err := os.WriteFile(filepath.Join(dir, "src/a/b/node_modules/x"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if changed := load(t, testOptions(dir)).Services[0]; changed.Hash == before.Hash {
		t.Errorf("a file added under a mount point left the hash unchanged")
	}
}

// Targets are cleaned before nesting is judged: one that climbs out of
// the bind with ".." is not nested in it, and no mount point leaves the
// release.
func TestMountPointTargetsAreCleaned(t *testing.T) {
	compose := "services:\n  app:\n    image: a:1\n    volumes:\n      - ./src:/srv/src\n      - /srv/src/../../etc/x\n      - /srv/src/a/./b/../c\n"
	dir := writeRelease(t, map[string]string{"compose.yaml": compose, "src/index.js": "1\n"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := Load(ctx, testOptions(dir))
	if err != nil {
		// compose-go may refuse such a target itself; then there is
		// nothing to check.
		t.Skipf("Load refused the targets: %v", err)
	}
	if want := []string{"src/a/c"}; !slices.Equal(p.MountPoints, want) {
		t.Errorf("MountPoints = %q, want %q", p.MountPoints, want)
	}
}
