package compose

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// lazyRelease is a release that starts empty and copies from full what
// the loader asks for, as gitsource's partial releases do from git: a
// file, a directory whole, a symlink and what it resolves to, with the
// directories on the way.
type lazyRelease struct {
	t         *testing.T
	full, dir string
	asked     []string
}

func (l *lazyRelease) need(rel string) error {
	l.asked = append(l.asked, rel)
	return l.copy(rel, 0)
}

func (l *lazyRelease) copy(rel string, hops int) error {
	src := filepath.Join(l.full, filepath.FromSlash(rel))
	// Each symlink on the way is copied and followed.
	parts := strings.Split(rel, "/")
	for i := range parts {
		q := filepath.Join(l.full, filepath.FromSlash(strings.Join(parts[:i+1], "/")))
		fi, err := os.Lstat(q)
		if err != nil {
			return nil // not in the "commit": the loader finds it missing
		}
		if fi.Mode()&fs.ModeSymlink != 0 && hops < 10 {
			if err := l.place(q); err != nil {
				return err
			}
			real, err := filepath.EvalSymlinks(q)
			if err != nil {
				return nil
			}
			r, _ := filepath.Rel(l.full, real)
			rest := filepath.Join(append([]string{r}, parts[i+1:]...)...)
			return l.copy(filepath.ToSlash(rest), hops+1)
		}
	}
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := l.place(p); err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			if real, err := filepath.EvalSymlinks(p); err == nil {
				r, _ := filepath.Rel(l.full, real)
				return l.copy(filepath.ToSlash(r), hops+1)
			}
		}
		return nil
	})
}

// place copies one entry of full (absolute path p) into the lazy release.
func (l *lazyRelease) place(p string) error {
	r, _ := filepath.Rel(l.full, p)
	dst := filepath.Join(l.dir, r)
	if _, err := os.Lstat(dst); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	fi, err := os.Lstat(p)
	if err != nil {
		return err
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(p)
		if err != nil {
			return err
		}
		return os.Symlink(target, dst)
	case fi.IsDir():
		return os.Mkdir(dst, 0o755)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, fi.Mode().Perm())
}

// loadBoth loads opts from its complete release and from a lazy copy of
// it, and requires the same services, hashes, files and mount points.
func loadBoth(t *testing.T, opts LoadOptions) (*Project, *lazyRelease) {
	t.Helper()
	fullP := load(t, opts)
	l := &lazyRelease{t: t, full: opts.ReleaseDir, dir: t.TempDir()}
	lazy := opts
	lazy.ReleaseDir = l.dir
	lazy.Need = l.need
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	lazyP, err := Load(ctx, lazy)
	if err != nil {
		t.Fatalf("load from a release holding only what the loader asked for (%q): %v", l.asked, err)
	}
	if len(fullP.Services) != len(lazyP.Services) {
		t.Fatalf("services: %d from the whole release, %d from the partial one", len(fullP.Services), len(lazyP.Services))
	}
	for i, s := range fullP.Services {
		z := lazyP.Services[i]
		if s.Name != z.Name || s.Hash != z.Hash || s.SpecHash != z.SpecHash || !slices.Equal(s.Files, z.Files) {
			t.Errorf("service %s differs: whole release hash %s files %v; partial %s hash %s files %v",
				s.Name, s.Hash, s.Files, z.Name, z.Hash, z.Files)
		}
	}
	if !slices.Equal(fullP.MountPoints, lazyP.MountPoints) {
		t.Errorf("mount points: whole %v, partial %v", fullP.MountPoints, lazyP.MountPoints)
	}
	return lazyP, l
}

// The loader asks for everything it reads or references, before it does:
// a release holding only that loads to the same project, hashes included.
func TestLoadFromAPartialRelease(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		links map[string]string // path -> target
		never []string          // paths the loader must not ask for
	}{
		{name: "kitchen"},
		{name: "includes, extends, project_directory and its .env", files: map[string]string{
			"compose.yaml":      "include:\n  - path: lib/db.yaml\n    project_directory: lib\n  - ${LIB}/cache.yaml\nservices:\n  web:\n    extends:\n      file: ${LIB}/base.yaml\n      service: base\n    image: web:1\n",
			".env":              "LIB=lib\n",
			"lib/db.yaml":       "services:\n  db:\n    image: db:${DB_TAG}\n    volumes:\n      - ./initdb:/docker-entrypoint-initdb.d:ro\n",
			"lib/.env":          "DB_TAG=16\n",
			"lib/cache.yaml":    "services:\n  cache:\n    image: redis:7\n    label_file: ./labels\n",
			"lib/labels":        "team=core\n",
			"lib/initdb/01.sql": "select 1;\n",
			"lib/base.yaml":     "services:\n  base:\n    image: base:1\n    env_file:\n      - path: base.env\n      - path: missing.env\n        required: false\n",
			"lib/base.env":      "FROM_BASE=1\n",
			"app/main.go":       "package main\n",
		}, never: []string{"app", "app/main.go"}},
		{name: "binds through symlinks, configs, nested mount points", files: map[string]string{
			"compose.yaml":     "services:\n  web:\n    image: nginx\n    volumes:\n      - ./deploy/site:/srv/site:ro\n      - cache:/srv/site/cache\n    configs:\n      - source: conf\n        target: /etc/nginx/nginx.conf\nconfigs:\n  conf:\n    file: ./nginx/nginx.conf\nvolumes:\n  cache: {}\n",
			"nginx/nginx.conf": "events {}\n",
			"site/index.html":  "hi\n",
			"site/cache/.keep": "",
			"shared/logo.svg":  "<svg/>\n",
			"code/huge.go":     strings.Repeat("// x\n", 100),
		}, links: map[string]string{"deploy": ".", "site/logo.svg": "../shared/logo.svg"}, never: []string{"code"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var dir string
			if tc.files == nil {
				dir = copyRelease(t, filepath.Join("testdata", tc.name))
			} else {
				dir = writeRelease(t, tc.files)
			}
			for p, target := range tc.links {
				if err := os.Symlink(target, filepath.Join(dir, p)); err != nil {
					t.Fatal(err)
				}
			}
			opts := testOptions(dir)
			if tc.name == "kitchen" {
				opts = kitchenOpts(t, testCommit)
			}
			_, l := loadBoth(t, opts)
			for _, n := range tc.never {
				if _, err := os.Lstat(filepath.Join(l.dir, n)); err == nil {
					t.Errorf("%s is in the partial release: the loader asked for %q", n, l.asked)
				}
			}
		})
	}
}

// A project using a repository file the loader did not ask for is refused
// as the bug it would be, not deployed with the file missing.
func TestNeedsCoveredRefusesUnaskedFiles(t *testing.T) {
	n := &needs{releaseDir: "/r", fn: func(string) error { return nil }, asked: map[string]bool{"nginx": true}}
	if !n.covered("nginx/conf.d/site.conf") || n.covered("nginx2/x") || n.covered("site") {
		t.Fatal("covered is wrong")
	}
	p := &Project{Services: []Service{{Name: "web", Files: []File{{Path: "nginx/nginx.conf"}, {Path: "site"}}}}}
	if err := n.checkCovered(p); err == nil || !strings.Contains(err.Error(), `"web" uses site`) {
		t.Fatalf("checkCovered = %v", err)
	}
}
