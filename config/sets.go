package config

import (
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/lockstep-gitops/lockstep/reconcile/envset"
	"github.com/lockstep-gitops/lockstep/reconcile/window"
)

// EnvironmentSet is one [[environment_set]] table: review environments,
// one per pin file its glob matches on the tracked branch, each named
// <name>-<file stem>, created when the file appears and torn down when
// it is deleted.
type EnvironmentSet struct {
	Name string // [a-z0-9][a-z0-9_-]*, unique among sets
	// Pins is a repo-relative glob ending in .toml, wildcards in the file
	// name only ("environments/review/*.toml").
	Pins string
	// Max is how many of the set's environments run at once (default
	// envset.DefaultMax); the oldest are kept, the rest are reported.
	Max int
	// RemoveVolumes (remove_volumes) lets a teardown remove the
	// environment's named volumes; false (the default) keeps them.
	RemoveVolumes bool
	// TTL tears an environment down once its pinned commit has not
	// changed for this long; 0 (the default) never.
	TTL time.Duration
	// URL is the review app's address template (${LOCKSTEP_SLUG},
	// ${LOCKSTEP_ENVIRONMENT}, ${LOCKSTEP_SET}); "" for none.
	URL           string
	ComposeFiles  []string
	EnvFiles      []string
	HealthTimeout time.Duration // as [health] when zero (filled by build)
	Bake          time.Duration
	// Windows are the host's deploy windows for every environment of the
	// set (windows, as for [[environment]]); nil: any time.
	Windows []string
}

// Spec is the set as the agent and the CLI run it.
func (s EnvironmentSet) Spec() envset.Set {
	return envset.Set{
		Name: s.Name, Pins: s.Pins, Max: s.Max, TTL: s.TTL, URL: s.URL, RemoveVolumes: s.RemoveVolumes,
		ComposeFiles: append([]string(nil), s.ComposeFiles...), EnvFiles: append([]string(nil), s.EnvFiles...),
		HealthTimeout: s.HealthTimeout, Bake: s.Bake, Windows: window.ParseValidated(s.Windows),
	}
}

type fileEnvironmentSet struct {
	Name          any `toml:"name"`
	Pins          any `toml:"pins"`
	Max           any `toml:"max"`
	RemoveVolumes any `toml:"remove_volumes"`
	TTL           any `toml:"ttl"`
	URL           any `toml:"url"`
	ComposeFiles  any `toml:"compose_files"`
	EnvFiles      any `toml:"env_files"`
	HealthTimeout any `toml:"health_timeout"`
	Bake          any `toml:"bake"`
	Windows       any `toml:"windows"`
}

func setKey(i int, name string) key {
	n := strconv.Itoa(i)
	return key{"[[environment_set]][" + n + "]." + name, "environment_set." + n + "." + name}
}

// environmentSets checks every [[environment_set]], then that set names
// cannot make an environment name that is ambiguous: a set named like a
// fixed environment, or one set's name a prefix of another's at a '-'
// ("review" and "review-eu": is review-eu-x of review or of review-eu?).
func (c *checker) environmentSets(fs []fileEnvironmentSet, envs []Environment, health Health) []EnvironmentSet {
	var out []EnvironmentSet
	names := map[string]int{}
	for i := range fs {
		k := func(name string) key { return setKey(i, name) }
		s := c.environmentSet(k, &fs[i])
		if s.HealthTimeout == 0 {
			s.HealthTimeout = health.Timeout
		}
		if s.Bake == 0 {
			s.Bake = health.Bake
		}
		if s.Name != "" && nameRE.MatchString(s.Name) {
			if j, dup := names[s.Name]; dup {
				c.add(k("name"), "%q is already the name of [[environment_set]][%d]", s.Name, j)
			}
			names[s.Name] = i
			for j, e := range envs {
				switch {
				case e.Name == s.Name:
					c.add(k("name"), "%q is also the name of a fixed [[environment]]: name the set otherwise", s.Name)
				case strings.HasPrefix(e.Name, s.Name+"-"), strings.HasPrefix(e.Project, s.Name+"-"):
					c.add(k("name"), "%q makes ambiguous names: [[environment]][%d] %q (project %q) could also be one of this set's (%s-<pin file stem>); name the set or the environment otherwise",
						s.Name, j, e.Name, e.Project, s.Name)
				}
			}
			for j, other := range out {
				if other.Name != s.Name && (strings.HasPrefix(s.Name, other.Name+"-") || strings.HasPrefix(other.Name, s.Name+"-")) {
					c.add(k("name"), "%q and [[environment_set]][%d] %q make ambiguous environment names (%s-x could be of either): name them so neither is the other's prefix at a '-'",
						s.Name, j, other.Name, s.Name)
				}
			}
		}
		out = append(out, s)
	}
	return out
}

// environmentSet decodes and checks one [[environment_set]].
func (c *checker) environmentSet(k func(string) key, f *fileEnvironmentSet) EnvironmentSet {
	s := EnvironmentSet{
		Name:          c.str(k("name"), f.Name, ""),
		Pins:          c.str(k("pins"), f.Pins, ""),
		RemoveVolumes: c.boolean(k("remove_volumes"), f.RemoveVolumes, false),
		TTL:           c.duration(k("ttl"), f.TTL, 0, 0),
		URL:           c.str(k("url"), f.URL, ""),
		ComposeFiles:  c.strings(k("compose_files"), f.ComposeFiles),
		EnvFiles:      c.strings(k("env_files"), f.EnvFiles),
		HealthTimeout: c.duration(k("health_timeout"), f.HealthTimeout, 0, time.Second),
		Bake:          c.duration(k("bake"), f.Bake, 0, time.Second),
		Windows:       c.windowList(k("windows"), f.Windows),
	}
	switch {
	case s.Name == "":
		c.add(k("name"), "required: every environment set needs a name such as \"review\" (its environments are named review-<pin file stem>)")
	case !nameRE.MatchString(s.Name):
		c.add(k("name"), "%q is not a valid name: use lowercase letters, digits, '-' and '_', starting with a letter or digit", s.Name)
	case len(s.Name) > envset.MaxNameLen/2:
		c.add(k("name"), "%q is too long: at most %d characters, to leave room for the pin file's stem", s.Name, envset.MaxNameLen/2)
	}
	c.setPins(k, &s)
	s.Max = c.integer(k("max"), f.Max, envset.DefaultMax, 1)
	if bad := envset.CheckURL(s.URL); len(bad) > 0 {
		c.add(k("url"), "${%s} is not a variable a set's url may use; use %s", bad[0], "${"+strings.Join(envset.URLVars, "}, ${")+"}")
	} else if s.URL != "" {
		sample := envset.ExpandURL(s.URL, "review", "pr-1", "review-pr-1")
		if u, err := url.Parse(sample); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			c.add(k("url"), "%q is not an http(s) URL such as \"https://${LOCKSTEP_SLUG}.review.example.com\"", s.URL)
		}
	}
	for j, cf := range s.ComposeFiles {
		if p, msg := repoPath(cf); msg != "" {
			c.add(k("compose_files"), "element %d: %s", j, msg)
		} else {
			s.ComposeFiles[j] = p
		}
	}
	e := Environment{EnvFiles: s.EnvFiles}
	c.envHostFiles(k, &e)
	return s
}

// setPins checks the pins glob: inside the repository, a .toml file name,
// wildcards in the file name only (listing the set is one tree read).
func (c *checker) setPins(k func(string) key, s *EnvironmentSet) {
	if s.Pins == "" {
		c.add(k("pins"), "required: a glob of pin files such as \"environments/review/*.toml\"")
		return
	}
	p, msg := repoPath(s.Pins)
	switch {
	case msg != "":
		c.add(k("pins"), "%s", msg)
	case strings.ContainsAny(path.Dir(p), "*?[\\"):
		c.add(k("pins"), "%q: wildcards are allowed in the file name only (\"environments/review/*.toml\")", s.Pins)
	case !strings.HasSuffix(p, ".toml"):
		c.add(k("pins"), "%q must end in .toml: it matches pin files", s.Pins)
	default:
		if _, err := path.Match(path.Base(p), ""); err != nil {
			c.add(k("pins"), "%q is not a valid glob: %v", s.Pins, err)
			return
		}
		s.Pins = p
	}
}

// integer returns v as an int of at least min, def when absent.
func (c *checker) integer(k key, v any, def, min int) int {
	switch v := v.(type) {
	case nil:
		return def
	case int64:
		if v < int64(min) {
			c.add(k, "must be at least %d, got %d", min, v)
			return def
		}
		return int(v)
	default:
		c.add(k, "must be an integer, got %s", describe(v))
		return def
	}
}
