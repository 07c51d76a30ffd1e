package compose

import (
	"os"
	"path/filepath"
	"testing"
)

func hashes(p *Project) map[string][2]string {
	out := map[string][2]string{}
	for _, s := range p.Services {
		out[s.Name] = [2]string{s.SpecHash, s.Hash}
	}
	return out
}

// kitchenOpts loads the kitchen-sink release from a fresh directory.
func kitchenOpts(t *testing.T, commit string) LoadOptions {
	opts := testOptions(copyRelease(t, "testdata/kitchen"))
	opts.Commit = commit
	opts.PinVars = map[string]string{"PIN_VAR": "from-pin"}
	return opts
}

// TestHashStableAcrossReleases: the same tree materialized at another
// commit, in another directory, by another lockstep version, hashes the
// same, except for services whose image tag is the commit.
func TestHashStableAcrossReleases(t *testing.T) {
	a := load(t, kitchenOpts(t, testCommit))
	optsB := kitchenOpts(t, testCommit)
	optsB.Version = "9.9.9"
	b := load(t, optsB)
	if a.ReleaseDir == b.ReleaseDir {
		t.Fatal("test needs two release dirs")
	}
	ha, hb := hashes(a), hashes(b)
	for name, h := range ha {
		if hb[name] != h {
			t.Errorf("service %s: hash changed with only the release dir and version changing: %v -> %v", name, h, hb[name])
		}
	}
	for i := range a.Networks {
		if a.Networks[i].Hash != b.Networks[i].Hash {
			t.Errorf("network %s: hash changed with the version", a.Networks[i].Name)
		}
	}

	c := load(t, kitchenOpts(t, testCommit2))
	hc := hashes(c)
	for name, h := range ha {
		changed := hc[name] != h
		// web and worker use ${LOCKSTEP_COMMIT_SHORT} as their tag.
		wantChanged := name == "web" || name == "worker"
		if changed != wantChanged {
			t.Errorf("service %s at a new commit: changed=%v, want %v", name, changed, wantChanged)
		}
	}
}

// TestHashFollowsRepositoryFiles: a changed file changes the hash of the
// services that use it, and only theirs.
func TestHashFollowsRepositoryFiles(t *testing.T) {
	base := hashes(load(t, kitchenOpts(t, testCommit)))
	tests := []struct {
		name         string
		edit         func(dir string) error
		configChange bool // the file's content is folded into the config (env_file)
	}{
		{"bind-mounted file", func(d string) error {
			return os.WriteFile(filepath.Join(d, "nginx/nginx.conf"), []byte("worker_processes 2;\n"), 0o644)
		}, false},
		{"file added to a bind-mounted dir", func(d string) error {
			return os.WriteFile(filepath.Join(d, "site/new.html"), []byte("new\n"), 0o644)
		}, false},
		{"file in a bind-mounted dir made executable", func(d string) error {
			return os.Chmod(filepath.Join(d, "site/index.html"), 0o755)
		}, false},
		{"config file: source", func(d string) error {
			return os.WriteFile(filepath.Join(d, "config.toml"), []byte("key = \"other\"\n"), 0o644)
		}, false},
		{"env_file", func(d string) error {
			return os.WriteFile(filepath.Join(d, "web.env"), []byte("WEB_FROM_FILE=2\nREF=${PIN_VAR}\n"), 0o644)
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := kitchenOpts(t, testCommit)
			if err := tt.edit(opts.ReleaseDir); err != nil {
				t.Fatal(err)
			}
			got := hashes(load(t, opts))
			for name, h := range base {
				if name == "web" {
					if got[name][1] == h[1] {
						t.Errorf("web's hash did not change")
					}
					if (got[name][0] != h[0]) != tt.configChange {
						t.Errorf("web's spec hash changed=%v, want %v", got[name][0] != h[0], tt.configChange)
					}
					continue
				}
				if got[name] != h {
					t.Errorf("service %s changed although it does not use the file", name)
				}
			}
		})
	}
}

func TestFilesListRepositoryFilesWithDigests(t *testing.T) {
	p := load(t, kitchenOpts(t, testCommit))
	web := p.Service("web")
	want := []string{"config.toml", "nginx/nginx.conf", "secrets/db_password.txt", "site", "web.env"}
	if len(web.Files) != len(want) {
		t.Fatalf("files = %v, want paths %v", web.Files, want)
	}
	for i, f := range web.Files {
		if f.Path != want[i] || len(f.Digest) != len("sha256:")+64 {
			t.Errorf("file %d = %+v, want path %s with a sha256 digest", i, f, want[i])
		}
	}
}

// TestPriorFilesMatchLoadDigests: the digests PriorFiles reads from an
// older release are the ones Load computes, so an unchanged file compares
// equal and a changed one is named.
func TestPriorFilesMatchLoadDigests(t *testing.T) {
	p := load(t, kitchenOpts(t, testCommit))
	var svc *Service
	for i := range p.Services {
		if len(p.Services[i].Files) > 0 {
			svc = &p.Services[i]
			break
		}
	}
	if svc == nil {
		t.Fatal("the kitchen release has no service using repository files")
	}
	prior := PriorFiles(p.ReleaseDir, svc.Files, SecretOptions{})
	for _, f := range svc.Files {
		if prior[f.Path] != f.Digest {
			t.Errorf("%s: PriorFiles says %q, Load said %q", f.Path, prior[f.Path], f.Digest)
		}
	}
	other := t.TempDir()
	if got := PriorFiles(other, svc.Files, SecretOptions{}); len(got) != 0 {
		t.Errorf("files absent from a release must be absent from the result, got %v", got)
	}
}

// TestImageBumpKeepsSpecHash: a release that only changes a tag changes
// the service hash (it must be recreated) but not its spec hash, so the
// plan explains it as an image change and nothing more. (Compose's
// config-hash covers the image and changes.)
func TestImageBumpKeepsSpecHash(t *testing.T) {
	a := load(t, kitchenOpts(t, testCommit))
	b := load(t, kitchenOpts(t, testCommit2)) // web's tag is ${LOCKSTEP_COMMIT_SHORT}
	wa, wb := a.Service("web"), b.Service("web")
	if wa.Image == wb.Image {
		t.Fatalf("test needs web's image to differ between the commits, both %s", wa.Image)
	}
	if wa.SpecHash != wb.SpecHash {
		t.Errorf("spec hash changed with only the image tag: %s -> %s", wa.SpecHash, wb.SpecHash)
	}
	if wa.Hash == wb.Hash {
		t.Errorf("service hash did not change with the image tag")
	}
}
