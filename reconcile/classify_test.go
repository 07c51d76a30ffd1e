package reconcile_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/compose/engine"
	"github.com/lockstep-gitops/lockstep/gitsource"
	"github.com/lockstep-gitops/lockstep/reconcile"
)

const sha = "9fceb02d0ae598e95dc970b74767f19372d61af8"

func step(s string, err error) error { return &reconcile.StepError{Step: s, Err: err} }

func TestClassify(t *testing.T) {
	pinErr := realPinError(t)
	loadErr := realLoadError(t)
	headErr := realHeadError(t)
	tests := []struct {
		name string
		err  error
		want reconcile.Class
	}{
		{"no error", nil, ""},
		{"agent stopping during apply", step(reconcile.StepApply, fmt.Errorf("apply prod at x: %w", context.Canceled)), ""},
		{"agent stopping during fetch", step(reconcile.StepSource, context.Canceled), ""},

		{"git host unreachable (real gitsource error)", step(reconcile.StepSource, headErr), reconcile.ClassGit},
		{"fetch timed out", step(reconcile.StepSource, fmt.Errorf("fetch x@main: %w", context.DeadlineExceeded)), reconcile.ClassGit},
		{"pin file with bad keys (real PinErrors)", step(reconcile.StepSource, pinErr), reconcile.ClassPermanent},
		{"one pin problem", step(reconcile.StepSource, &gitsource.PinError{File: "environments/prod.toml", Key: "commit", Message: "missing"}), reconcile.ClassPermanent},
		{"pin file missing at the head", step(reconcile.StepSource, fmt.Errorf("%w: environments/prod.toml does not exist", gitsource.ErrPinNotFound)), reconcile.ClassPermanent},
		{"pinned commit not on the branch", step(reconcile.StepSource, &gitsource.NotOnBranchError{Commit: sha, Branch: "main", URL: "https://git.example/infra"}), reconcile.ClassPermanent},
		{"pinned tag does not exist", step(reconcile.StepSource, fmt.Errorf("resolve: %w", &gitsource.RefNotFoundError{Name: "v9", URL: "https://git.example/infra"})), reconcile.ClassPermanent},
		{"symlink escaping the release", step(reconcile.StepSource, fmt.Errorf("materialize %s: %w", sha, &gitsource.TreeError{Path: "etc/x", Msg: `symlink etc/x -> "../.." points outside the release`})), reconcile.ClassPermanent},

		{"broken compose file (real LoadError)", step(reconcile.StepLoad, fmt.Errorf("load prod at %s: %w", sha[:12], loadErr)), reconcile.ClassPermanent},
		{"any load failure is the release's content", step(reconcile.StepLoad, errors.New("load prod: release dir is not a directory")), reconcile.ClassPermanent},
		{"LoadError even without a step", loadErr, reconcile.ClassPermanent},

		{"engine down while observing", step(reconcile.StepObserve, errors.New("Cannot connect to the Docker daemon")), reconcile.ClassEngine},
		{"image tag not pushed yet is retried", step(reconcile.StepApply, fmt.Errorf("apply prod: %w", &engine.PullError{Image: "127.0.0.1:5000/web:abc", Registry: "127.0.0.1:5000", NotFound: true})), reconcile.ClassEngine},
		{"registry denies access", step(reconcile.StepApply, &engine.PullError{Image: "r/web:1", Registry: "r", Denied: true}), reconcile.ClassEngine},
		{"dependency never healthy", step(reconcile.StepApply, &reconcile.DependencyError{Service: "web", Dependency: "db", Err: errors.New("unhealthy")}), reconcile.ClassEngine},
		{"external network missing", step(reconcile.StepApply, fmt.Errorf("apply prod: %w", &reconcile.PreconditionError{Problems: []string{`external network "edge" does not exist`}})), reconcile.ClassPermanent},
		{"apply timed out", step(reconcile.StepApply, context.DeadlineExceeded), reconcile.ClassEngine},
		{"unlabelled error", errors.New("something"), reconcile.ClassEngine},
		{"full disk while fetching is retried", step(reconcile.StepSource, fmt.Errorf("fetch x@main: %w", &os.PathError{Op: "write", Path: "/var/lib/lockstep/git/objects/pack/tmp_pack_1", Err: syscall.ENOSPC})), reconcile.ClassGit},
		{"full disk in any step is retried, never permanent", step(reconcile.StepLoad, fmt.Errorf("load prod: %w", &os.PathError{Op: "write", Path: "/var/lib/lockstep/x", Err: syscall.ENOSPC})), reconcile.ClassEngine},
		{"full disk writing a record is retried", fmt.Errorf("write /var/lib/lockstep/environments/prod/deployed.json: %w", &os.PathError{Op: "write", Path: "/var/lib/lockstep/environments/prod/.deployed.json.tmp-1", Err: syscall.ENOSPC}), reconcile.ClassEngine},
		{"permanent error inside a join", step(reconcile.StepApply, errors.Join(errors.New("first"), &reconcile.PreconditionError{Problems: []string{"x"}})), reconcile.ClassPermanent},
		{"a wrapper answering false does not hide a permanent cause", notPermanent{&gitsource.PinError{File: "p", Message: "m"}}, reconcile.ClassPermanent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := reconcile.Classify(tt.err); got != tt.want {
				t.Errorf("Classify(%v) = %q, want %q", tt.err, got, tt.want)
			}
		})
	}
}

// notPermanent is an error that says it is not permanent but wraps one that
// is.
type notPermanent struct{ err error }

func (e notPermanent) Error() string   { return "wrapper: " + e.err.Error() }
func (e notPermanent) Unwrap() error   { return e.err }
func (e notPermanent) Permanent() bool { return false }

func realPinError(t *testing.T) error {
	t.Helper()
	_, err := gitsource.ParsePin("environments/prod.toml", []byte("comit = \"main\"\n"))
	if err == nil {
		t.Fatal("ParsePin accepted a pin with an unknown key")
	}
	return err
}

func realLoadError(t *testing.T) error {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte("services:\n  web:\n    image: 127.0.0.1:5000/web:${NOT_SET_ANYWHERE}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := compose.Load(context.Background(), compose.LoadOptions{ReleaseDir: dir, Project: "prod", Environment: "prod", Commit: sha})
	var le *compose.LoadError
	if !errors.As(err, &le) {
		t.Fatalf("compose.Load of a compose file with an unset variable: %v, want a *compose.LoadError", err)
	}
	return err
}

// realHeadError is what gitsource says when nothing listens at the repo URL.
func realHeadError(t *testing.T) error {
	t.Helper()
	src, err := gitsource.New(gitsource.Options{URL: "http://127.0.0.1:1/infra.git", StateDir: t.TempDir(), Timeout: 5 * time.Second, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = src.Head(ctx)
	if err == nil {
		t.Fatal("Head of a URL nothing listens on succeeded")
	}
	return err
}
