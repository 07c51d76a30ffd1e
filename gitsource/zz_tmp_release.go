package gitsource

import "context"

// TEMPORARY stand-in for the types of release.go (wt-gitsrc); removed at merge.

type Want struct {
	Environment string
	PinFile     string
	MinCommit   string
	Commit      string
}

type Release struct {
	Head         string
	Commit       string
	Dir          string
	PinFile      string
	ComposeFiles []string
	Vars         map[string]string
	EnvFiles     []string
	Signatures   []string
	Paused       bool
}

type Releases struct{}

func (r *Releases) Resolve(ctx context.Context, w Want) (Release, error)          { return Release{}, nil }
func (r *Releases) Materialize(ctx context.Context, rel Release) (Release, error) { return rel, nil }
func (r *Releases) CheckFloor(ctx context.Context, floor, commit string) error    { return nil }
func (r *Releases) Prune(inUse map[string]bool) error                             { return nil }
func (r *Releases) Head(ctx context.Context) (string, error)                      { return "", nil }
