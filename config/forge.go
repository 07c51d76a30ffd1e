package config

import (
	"net/url"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/lockstep-gitops/lockstep/gitsource"
)

// Forge kinds ([forge].kind).
const (
	ForgeGitHub  = "github"
	ForgeGitLab  = "gitlab"
	ForgeGitea   = "gitea"
	ForgeForgejo = "forgejo" // Gitea's API, under its own name
)

// DefaultForgeContext is the status context (the name a status is listed
// under on the commit) when [forge].context sets none: one per environment
// and host, so two hosts deploying the same environment do not overwrite
// each other's status.
const DefaultForgeContext = "lockstep/{environment}@{host}"

// Forge is the [forge] table: where the result of a deploy is posted back
// to, as a commit status (and on GitHub a deployment) on the commit
// deployed. It is on when TokenFile is set.
type Forge struct {
	Kind       string // kind: github, gitlab, gitea or forgejo; guessed for github.com and gitlab.com
	APIURL     string // api_url: API base, no trailing slash; defaulted per kind from [repo].url
	TokenFile  string // token_file: file holding the API token (never the token itself)
	Repository string // repository: owner/name (GitLab: group/subgroup/name); default the [repo].url path
	// Context is the status context, with {environment} and {host}
	// replaced when a status is posted; default DefaultForgeContext.
	Context string
	// Host is what {host} stands for; "" means os.Hostname(), filled in by
	// the daemon at start-up (Parse stays pure).
	Host string
	// Deployments (deployments) also keeps a GitHub deployment per
	// environment and commit (in_progress, success, failure, inactive).
	// GitHub only; default true there, false elsewhere.
	Deployments bool
}

// Enabled reports whether deploy results are posted to the forge at all.
func (f Forge) Enabled() bool { return f.TokenFile != "" }

type fileForge struct {
	Kind        any `toml:"kind"`
	APIURL      any `toml:"api_url"`
	TokenFile   any `toml:"token_file"`
	Repository  any `toml:"repository"`
	Context     any `toml:"context"`
	Host        any `toml:"host"`
	Deployments any `toml:"deployments"`
}

func (f *fileForge) empty() bool { return *f == fileForge{} }

// forgeRepoPath is an owner/name path: segments of letters, digits, '.',
// '_' and '-', not starting with '.'.
var forgeRepoPath = regexp.MustCompile(`^[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)+$`)

// forgeContextVar finds the {placeholders} of a context.
var forgeContextVar = regexp.MustCompile(`\{[^{}]*\}`)

// forge checks [forge] against the already checked repo URL.
func (c *checker) forge(f *fileForge, repoURL string) Forge {
	if f.empty() {
		return Forge{}
	}
	k := func(name string) key { return tableKey("forge", name) }
	out := Forge{
		Kind:       c.str(k("kind"), f.Kind, ""),
		APIURL:     c.str(k("api_url"), f.APIURL, ""),
		TokenFile:  c.str(k("token_file"), f.TokenFile, ""),
		Repository: c.str(k("repository"), f.Repository, ""),
		Context:    c.str(k("context"), f.Context, DefaultForgeContext),
		Host:       c.str(k("host"), f.Host, ""),
	}
	scheme, host, path := splitRepoURL(repoURL)
	shown := gitsource.RedactURL(repoURL)

	switch out.TokenFile {
	case "":
		c.add(k("token_file"), "required in [forge]: the file holding the API token that posts commit statuses (it is never written in the config)")
	default:
		if !filepath.IsAbs(out.TokenFile) {
			c.add(k("token_file"), "must be an absolute path, got %q", out.TokenFile)
		}
	}

	out.Kind = c.forgeKind(out.Kind, host)
	if out.APIURL == "" {
		out.APIURL = defaultForgeAPI(out.Kind, scheme, host)
		if out.APIURL == "" && out.Kind != "" {
			c.add(k("api_url"), "required: the %s API base (e.g. https://git.example.com/api/v1) cannot be derived from [repo].url %q", out.Kind, shown)
		}
	} else if msg := checkForgeAPI(out.APIURL); msg != "" {
		c.add(k("api_url"), "%s", msg)
	}
	out.APIURL = strings.TrimRight(out.APIURL, "/")

	if out.Repository == "" {
		out.Repository = strings.TrimSuffix(strings.Trim(path, "/"), ".git")
		if out.Repository == "" {
			c.add(k("repository"), "required: the repository on the forge (owner/name) cannot be derived from [repo].url %q", shown)
		}
	}
	if out.Repository != "" {
		c.checkForgeRepository(k("repository"), out.Kind, out.Repository)
	}

	for _, v := range forgeContextVar.FindAllString(out.Context, -1) {
		if v != "{environment}" && v != "{host}" {
			c.add(k("context"), "unknown placeholder %s: only {environment} and {host} are replaced", v)
		}
	}
	if !strings.Contains(out.Context, "{environment}") {
		c.add(k("context"), "must contain {environment}, or every environment would overwrite the others' status; got %q", out.Context)
	}

	github := out.Kind == ForgeGitHub
	out.Deployments = c.boolean(k("deployments"), f.Deployments, github)
	if out.Deployments && !github && out.Kind != "" {
		c.add(k("deployments"), "only GitHub has a deployments API; %s gets commit statuses only", out.Kind)
	}
	return out
}

// forgeKind checks kind, or guesses it from the repository's host.
func (c *checker) forgeKind(kind, host string) string {
	k := tableKey("forge", "kind")
	switch kind {
	case ForgeGitHub, ForgeGitLab, ForgeGitea, ForgeForgejo:
		return kind
	case "":
	default:
		c.add(k, "must be github, gitlab, gitea or forgejo, got %q", kind)
		return ""
	}
	switch strings.ToLower(hostOnly(host)) {
	case "github.com":
		return ForgeGitHub
	case "gitlab.com":
		return ForgeGitLab
	}
	c.add(k, "required: which forge [repo].url is on (github, gitlab, gitea or forgejo) cannot be told from its host %q", host)
	return ""
}

// defaultForgeAPI is the API base of kind for a repository at
// scheme://host; "" when it cannot be derived (an ssh URL of a self-hosted
// forge: its web port is unknown).
func defaultForgeAPI(kind, scheme, host string) string {
	name := strings.ToLower(hostOnly(host))
	web := scheme == "https" || scheme == "http"
	switch kind {
	case ForgeGitHub:
		if name == "github.com" {
			return "https://api.github.com"
		}
		if web {
			return scheme + "://" + host + "/api/v3" // GitHub Enterprise Server
		}
	case ForgeGitLab:
		if name == "gitlab.com" {
			return "https://gitlab.com/api/v4"
		}
		if web {
			return scheme + "://" + host + "/api/v4"
		}
	case ForgeGitea, ForgeForgejo:
		if web {
			return scheme + "://" + host + "/api/v1"
		}
	}
	return ""
}

// checkForgeAPI says what is wrong with an api_url, "" when nothing.
func checkForgeAPI(s string) string {
	u, err := url.Parse(s)
	switch {
	case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "":
		return "must be an http:// or https:// URL such as https://git.example.com/api/v1, got " + quote(s)
	case u.User != nil:
		return "must not hold credentials: the token is read from token_file"
	case u.RawQuery != "" || u.Fragment != "":
		return "must not have a query or fragment, got " + quote(s)
	}
	return ""
}

// quote quotes a value that holds no secret.
func quote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"` }

// checkForgeRepository checks a repository path for kind: GitHub and
// Gitea have exactly owner/name, GitLab may nest groups.
func (c *checker) checkForgeRepository(k key, kind, repo string) {
	if !forgeRepoPath.MatchString(repo) {
		c.add(k, "must be owner/name (GitLab: group/subgroup/name), got %q", repo)
		return
	}
	if kind != ForgeGitLab && strings.Count(repo, "/") != 1 {
		c.add(k, "must be owner/name on %s, got %q", kind, repo)
	}
}

// splitRepoURL returns the scheme, host (with its port) and path of a
// repository URL; scp-like user@host:path has scheme "ssh". Local paths
// and file:// URLs have no host.
func splitRepoURL(raw string) (scheme, host, path string) {
	if !strings.Contains(raw, "://") {
		at := strings.IndexByte(raw, '@')
		colon := strings.IndexByte(raw, ':')
		if at < 0 || colon < at {
			return "", "", ""
		}
		return "ssh", raw[at+1 : colon], raw[colon+1:]
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "", "", ""
	}
	return u.Scheme, u.Host, u.Path
}

// hostOnly strips a port.
func hostOnly(host string) string {
	if u, err := url.Parse("//" + host); err == nil {
		return u.Hostname()
	}
	return host
}
