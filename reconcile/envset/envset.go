// Package envset owns what an [[environment_set]] means apart from
// running it: which pin files of the tracked branch a set's glob
// matches, the environment and compose project name each one gets
// (`<set>-<stem>`, within compose's project-name rules), which files
// clash and are refused, and the review app URL a set's template
// expands to. The agent (reconcile/agent) runs what Expand returns; the
// config checks set names with the same rules; the CLI finds a review
// environment by name through it.
//
// It is pure: it reads no git, no state dir and no engine.
package envset

import (
	"fmt"
	"path"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/lockstep-gitops/lockstep/reconcile/window"
)

// MaxNameLen bounds an environment (and compose project) name made from
// a pin file, so that container names (<project>-<service>-<n>) and a
// host rule's DNS label stay short.
const MaxNameLen = 63

// DefaultMax is how many environments a set runs at once when its max is
// not set.
const DefaultMax = 10

// Set is one [[environment_set]] as the agent runs it.
type Set struct {
	Name string // set name; environments are <Name>-<stem>
	// Pins is a repo-relative glob with wildcards in its last element
	// only ("environments/review/*.toml").
	Pins          string
	Max           int           // at most this many run at once
	TTL           time.Duration // 0: never expires
	URL           string        // review app URL template ("" = none)
	RemoveVolumes bool          // a teardown removes the named volumes too
	ComposeFiles  []string
	EnvFiles      []string
	HealthTimeout time.Duration
	Bake          time.Duration
	Windows       []window.Window // deploy windows of every member; nil: any time
}

// Dir is the directory of the set's pin files; Pattern the glob of
// their names in it.
func (s Set) Dir() string     { return path.Dir(s.Pins) }
func (s Set) Pattern() string { return path.Base(s.Pins) }

// Matches reports whether file (repo-relative) is one of the set's pin
// files.
func (s Set) Matches(file string) bool {
	if path.Dir(file) != s.Dir() {
		return false
	}
	ok, err := path.Match(s.Pattern(), path.Base(file))
	return err == nil && ok
}

var (
	invalidRun = regexp.MustCompile(`[^a-z0-9_-]+`)
	dashRun    = regexp.MustCompile(`[-_]*-[-_]*`)
)

// Slug is the pin file's stem as a name fragment: lowercase, runs of
// anything but [a-z0-9_-] turned into one '-', no '-' or '_' at either
// end. "environments/review/PR #142.toml" is "pr-142". "" when nothing
// is left.
func Slug(file string) string {
	stem := strings.TrimSuffix(path.Base(file), path.Ext(file))
	s := invalidRun.ReplaceAllString(strings.ToLower(stem), "-")
	s = dashRun.ReplaceAllString(s, "-")
	return strings.Trim(s, "-_")
}

// Name is the environment (and compose project) name of set's pin file
// file: "<set>-<slug>", the slug cut so the name fits MaxNameLen. "" when
// the file's stem leaves no slug.
func Name(set, file string) string {
	slug := Slug(file)
	if slug == "" {
		return ""
	}
	if room := MaxNameLen - len(set) - 1; len(slug) > room {
		slug = strings.TrimRight(slug[:max(room, 1)], "-_")
	}
	return set + "-" + slug
}

// SlugOf is the slug of the environment name of a set: the name without
// "<set>-".
func SlugOf(set, env string) string { return strings.TrimPrefix(env, set+"-") }

// Member is one pin file of a set that may run.
type Member struct {
	Name    string // environment and compose project name
	PinFile string
	Slug    string
	URL     string
}

// Refused is a pin file of a set that does not run, and why.
type Refused struct {
	Set     string
	PinFile string
	Name    string // the environment name it would have had, "" when none
	Reason  string
}

// Expand turns the pin files found for set into its members, sorted by
// name, and the files refused: a stem that leaves no name, two files that
// make the same name (neither runs: which one would be a guess), or a
// name of a fixed environment (fixed holds those names).
func Expand(set Set, files []string, fixed map[string]bool) ([]Member, []Refused) {
	byName := map[string][]string{}
	var refused []Refused
	for _, f := range files {
		if !set.Matches(f) {
			continue
		}
		name := Name(set.Name, f)
		if name == "" {
			refused = append(refused, Refused{Set: set.Name, PinFile: f, Reason: fmt.Sprintf("not deployed: the name of %s leaves nothing to name an environment by; use letters or digits", f)})
			continue
		}
		byName[name] = append(byName[name], f)
	}
	var members []Member
	for name, fs := range byName {
		sort.Strings(fs)
		switch {
		case len(fs) > 1:
			for _, f := range fs {
				refused = append(refused, Refused{Set: set.Name, PinFile: f, Name: name, Reason: fmt.Sprintf(
					"not deployed: %s all make the environment name %s; rename all but one", strings.Join(fs, ", "), name)})
			}
		case fixed[name]:
			refused = append(refused, Refused{Set: set.Name, PinFile: fs[0], Name: name, Reason: fmt.Sprintf(
				"not deployed: %s makes the environment name %s, which is a fixed [[environment]]'s; rename the pin file", fs[0], name)})
		default:
			slug := SlugOf(set.Name, name)
			members = append(members, Member{Name: name, PinFile: fs[0], Slug: slug, URL: ExpandURL(set.URL, set.Name, slug, name)})
		}
	}
	sort.Slice(members, func(i, j int) bool { return members[i].Name < members[j].Name })
	sort.Slice(refused, func(i, j int) bool { return refused[i].PinFile < refused[j].PinFile })
	return members, refused
}

// URLVars are the variables a set's url template may use.
var URLVars = []string{"LOCKSTEP_SLUG", "LOCKSTEP_ENVIRONMENT", "LOCKSTEP_SET"}

// ExpandURL expands ${LOCKSTEP_SLUG}, ${LOCKSTEP_ENVIRONMENT} and
// ${LOCKSTEP_SET} in tmpl; nothing else is touched (the config refuses
// any other ${...}).
func ExpandURL(tmpl, set, slug, env string) string {
	if tmpl == "" {
		return ""
	}
	return strings.NewReplacer("${LOCKSTEP_SLUG}", slug, "${LOCKSTEP_ENVIRONMENT}", env, "${LOCKSTEP_SET}", set).Replace(tmpl)
}

var varRef = regexp.MustCompile(`\$\{([^}]*)\}`)

// CheckURL returns the variables tmpl uses that ExpandURL does not know.
func CheckURL(tmpl string) []string {
	var bad []string
	for _, m := range varRef.FindAllStringSubmatch(tmpl, -1) {
		known := false
		for _, v := range URLVars {
			known = known || m[1] == v
		}
		if !known {
			bad = append(bad, m[1])
		}
	}
	return bad
}

// Fixed is the set of names a set's environment may not take: the fixed
// environments' names and compose projects.
func Fixed(names ...string) map[string]bool {
	out := map[string]bool{}
	for _, n := range names {
		out[n] = true
	}
	return out
}
