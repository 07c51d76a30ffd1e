// Package demo owns the example world `lockstep demo` deploys: the
// throw-away infrastructure repository (its content is embedded in the
// binary), the images packed from the running lockstep binary, and the tiny
// web server those images run.
//
// It never decides what to deploy: the CLI runs the real agent against
// what this package creates. It never touches anything it was not
// given: files only under the directory it is handed, images only under the
// name prefix it is handed.
package demo

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"time"

	git "github.com/go-git/go-git/v5"
	gitconfig "github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// Environment is the demo's one environment; PinPath is its pin file in
// the repository (lockstep's default, environments/<env>.toml).
const (
	Environment = "demo"
	PinPath     = "environments/" + Environment + ".toml"
	Branch      = "main"
)

// Variables the compose file reads from the host-local env file.
const (
	VarImages = "DEMO_IMAGES" // image name prefix: <prefix>/web:v1
	VarPort   = "DEMO_PORT"   // host port web publishes on 127.0.0.1
)

//go:embed repo
var content embed.FS

// author signs every demo commit; the .invalid domain cannot be anyone's.
var author = object.Signature{Name: "lockstep demo", Email: "demo@lockstep.invalid"}

// Repo is the demo's git repository, with a worktree that commits are made
// in, the way a person (or a merge button) would make them. Once it has an
// origin (AddOrigin), every commit is pushed there, as a merge lands on the
// git server.
type Repo struct {
	Dir    string
	Origin string // bare repository the agent watches; "" until AddOrigin
	repo   *git.Repository
	wt     *git.Worktree
}

// pushTimeout bounds one push to the local origin.
const pushTimeout = time.Minute

// InitRepo creates a repository at dir (which must not hold one) on branch
// main, writes the embedded example stack into it and commits it. The
// commit's SHA is returned with the repository.
func InitRepo(dir string) (*Repo, string, error) {
	r, err := git.PlainInitWithOptions(dir, &git.PlainInitOptions{
		InitOptions: git.InitOptions{DefaultBranch: plumbing.NewBranchReferenceName(Branch)},
	})
	if err != nil {
		return nil, "", fmt.Errorf("create the demo repository at %s: %w", dir, err)
	}
	wt, err := r.Worktree()
	if err != nil {
		return nil, "", fmt.Errorf("demo repository %s: %w", dir, err)
	}
	repo := &Repo{Dir: dir, repo: r, wt: wt}

	files := map[string]string{}
	err = fs.WalkDir(content, "repo", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := content.ReadFile(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel("repo", p)
		if err != nil {
			return err
		}
		files[filepath.ToSlash(rel)] = string(data)
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("read the embedded demo repository: %w", err)
	}
	sha, err := repo.Commit("web v1 and a worker", files)
	if err != nil {
		return nil, "", err
	}
	return repo, sha, nil
}

// Commit writes files (slash-separated repository paths to content) into
// the worktree, stages them and commits them on main. It returns the new
// commit's SHA.
func (r *Repo) Commit(msg string, files map[string]string) (string, error) {
	for p, data := range files {
		full := filepath.Join(r.Dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return "", fmt.Errorf("demo commit %q: %w", msg, err)
		}
		if err := os.WriteFile(full, []byte(data), 0o644); err != nil {
			return "", fmt.Errorf("demo commit %q: %w", msg, err)
		}
		if _, err := r.wt.Add(p); err != nil {
			return "", fmt.Errorf("demo commit %q: stage %s: %w", msg, p, err)
		}
	}
	sig := author
	sig.When = time.Now()
	h, err := r.wt.Commit(msg, &git.CommitOptions{Author: &sig})
	if err != nil {
		return "", fmt.Errorf("demo commit %q: %w", msg, err)
	}
	if r.Origin != "" {
		if err := r.push(); err != nil {
			return "", fmt.Errorf("demo commit %q: %w", msg, err)
		}
	}
	return h.String(), nil
}

// AddOrigin creates a bare repository at dir, the demo's git server, and
// pushes main to it; every later Commit is pushed too. The agent must watch
// the origin, not the worktree: go-git rewrites a branch file in place when
// it commits, so a poll reading the worktree's refs at that instant could
// see an empty branch, while git-receive-pack updates the origin's branch
// with a lock file and a rename.
func (r *Repo) AddOrigin(dir string) error {
	_, err := git.PlainInitWithOptions(dir, &git.PlainInitOptions{
		InitOptions: git.InitOptions{DefaultBranch: plumbing.NewBranchReferenceName(Branch)},
		Bare:        true,
	})
	if err != nil {
		return fmt.Errorf("create the demo's origin repository at %s: %w", dir, err)
	}
	if _, err := r.repo.CreateRemote(&gitconfig.RemoteConfig{Name: "origin", URLs: []string{dir}}); err != nil {
		return fmt.Errorf("demo repository %s: add origin %s: %w", r.Dir, dir, err)
	}
	r.Origin = dir
	return r.push()
}

// push sends main to the origin through git-receive-pack.
func (r *Repo) push() error {
	ctx, cancel := context.WithTimeout(context.Background(), pushTimeout)
	defer cancel()
	ref := plumbing.NewBranchReferenceName(Branch)
	err := r.repo.PushContext(ctx, &git.PushOptions{
		RemoteName: "origin",
		RefSpecs:   []gitconfig.RefSpec{gitconfig.RefSpec(ref + ":" + ref)},
	})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return fmt.Errorf("push %s to %s (needs git-receive-pack, from git): %w", Branch, r.Origin, err)
	}
	return nil
}

// Release commits the pin file naming commit: what merging a release PR
// does. msg is the commit message.
func (r *Repo) Release(msg, commit string) (string, error) {
	return r.Commit(msg, map[string]string{PinPath: PinFile(commit)})
}

// PinFile is the content of the demo environment's pin file at commit.
func PinFile(commit string) string {
	return "# The commit the demo environment runs. Changing this line is a release;\n" +
		"# reverting that change is a rollback.\n" +
		fmt.Sprintf("commit = %q\n", commit)
}

// webImage is web's image line in compose.yaml; the service key before it
// keeps the worker's image line from matching.
var webImage = regexp.MustCompile(`(?m)^(  web:\n    image: \$\{` + VarImages + `\}/web:)(\S+)$`)

// SetWebTag commits a change of web's image tag in compose.yaml: what
// merging an application change does once CI has built its image.
func (r *Repo) SetWebTag(tag string) (string, error) {
	data, err := os.ReadFile(filepath.Join(r.Dir, "compose.yaml"))
	if err != nil {
		return "", fmt.Errorf("demo commit web %s: %w", tag, err)
	}
	if !webImage.Match(data) {
		return "", errors.New("demo commit web " + tag + ": compose.yaml has no `image: ${" + VarImages + "}/web:<tag>` line right under `web:`")
	}
	out := webImage.ReplaceAll(data, []byte("${1}"+tag))
	return r.Commit("web "+tag, map[string]string{"compose.yaml": string(out)})
}
