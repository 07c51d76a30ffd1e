package compose

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/schema"
	"github.com/compose-spec/compose-go/v2/types"
)

// LoadOptions are the inputs of Load: everything that determines the
// desired project. Two loads with equal options over equal release trees
// return deeply equal projects.
type LoadOptions struct {
	ReleaseDir   string            // absolute; the project working dir
	Project      string            // compose project name: [a-z0-9][a-z0-9_-]*
	Environment  string            // lockstep environment name
	Commit       string            // 40-hex revision
	ComposeFiles []string          // relative to ReleaseDir; empty = compose's own discovery at the root
	PinVars      map[string]string // the pin file's [vars]
	RepoEnvFiles []string          // the pin file's env_files: relative to ReleaseDir, dotenv, plain or age-encrypted (*.age), in order
	HostEnvFiles []string          // absolute host-local env files (secrets outside git), in order
	Version      string            // lockstep version, for the com.docker.compose.version label
	Secrets      SecretOptions     // how to decrypt the release's *.age files and where decrypted configs/secrets go
	// Strict refuses the keys Docker Compose ignores on a single host
	// (Swarm-only deploy settings, build: beside image:, develop:, ...)
	// instead of ignoring them with a Project.Warnings entry
	// ([compose].strict).
	Strict bool
	// HostFileRoots are the absolute host directories an env_file outside
	// the release may be read from ([policy].allowed_bind_roots: what a
	// container may bind, it may also read as environment).
	HostFileRoots []string
	// HostPlatform is the engine's os/arch ("linux/amd64") that platform:
	// is compared with; "" means the agent's own, the engine being local.
	HostPlatform string
	// Need, when set, is called with every path of the release (clean,
	// slash-separated, relative to ReleaseDir) the load is about to read
	// or reference, before it looks at it: a partial release adds it then
	// from git (gitsource Releases.AddPaths). nil: the release is complete.
	Need func(path string) error
	// Set, Slug and URL are a review environment's [[environment_set]],
	// pin file stem and review app URL (LOCKSTEP_SET, LOCKSTEP_SLUG,
	// LOCKSTEP_URL); "" for a fixed environment, whose slug is then its
	// name.
	Set, Slug, URL string
	// Swarm loads the project as a Docker Swarm stack (Project.Stack), as
	// docker stack deploy converts it: deploy: keys are honoured, keys a
	// swarm cannot honour are refused naming the service and the key.
	Swarm bool

	needs *needs // Need, with what was asked for; set by Load
}

// Compose's discovery names, in its order of preference.
var (
	defaultFileNames     = []string{"compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml"}
	defaultOverrideNames = []string{"compose.override.yaml", "compose.override.yml", "docker-compose.override.yaml", "docker-compose.override.yml"}
)

var (
	projectNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
	commitRE      = regexp.MustCompile(`^[0-9a-f]{40}$`)
)

// Load reads the compose files of a materialized release and returns the
// desired project: every active service converted into Engine API create
// configs, labelled and hashed.
//
// Profiles: lockstep activates none, so services that declare `profiles:`
// are not deployed (they are absent from Project.Services).
//
// Load writes nothing anywhere. Encrypted files (*.age, see SecretOptions)
// are decrypted in memory; the configs and secrets among them are bound
// from content-addressed paths under opts.Secrets.RuntimeDir
// (Project.SecretFiles), which WriteSecrets writes when the project is
// applied. Load only checks, read-only, that the runtime dir is a tmpfs
// the agent can trust, as far as it exists.
//
// With opts.Swarm the project is converted into a swarm stack instead
// (Project.Stack, see stack_convert.go): Services, Networks, Volumes and
// SecretFiles stay empty, configs and secrets are read into swarm objects
// in memory, and nothing is bound from the runtime dir.
//
// Every configuration problem is returned as a *LoadError naming the file,
// line, service and key as far as they are known. No error carries a
// decrypted value.
func Load(ctx context.Context, opts LoadOptions) (*Project, error) {
	k := newKeyring(opts.Secrets)
	p, err := loadProject(ctx, opts, k)
	return p, k.redact(err)
}

func loadProject(ctx context.Context, opts LoadOptions, k *keyring) (*Project, error) {
	if err := validateOptions(opts); err != nil {
		return nil, err
	}
	opts.needs = newNeeds(opts)
	files, err := composeFiles(opts)
	if err != nil {
		return nil, err
	}
	env, err := interpolationEnv(opts, k)
	if err != nil {
		return nil, err
	}
	opts.needs.env = env
	src, err := scanSources(opts.ReleaseDir, files, opts.needs)
	if err != nil {
		return nil, err
	}
	if err := refuseEncryptedIncludeEnv(src); err != nil {
		return nil, err
	}
	if err := k.checkLabels(src); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("load %s: %w", opts.ReleaseDir, err)
	}

	missing := &missingVars{}
	details := types.ConfigDetails{
		WorkingDir:  opts.ReleaseDir,
		ConfigFiles: types.ToConfigFiles(files),
		Environment: env,
	}
	cp, loadErr := loader.LoadWithContext(ctx, details, func(o *loader.Options) {
		o.SetProjectName(opts.Project, true)
		// Keep compose-go's lookup (details.Environment) and type casts;
		// only the substitution changes, to catch unset variables.
		o.Interpolate.Substitute = missing.substitute
		// Only the local loader compose-go appends itself: nothing remote
		// can be fetched. scanSources already refused remote references
		// with a clear message; this is the second line.
		o.ResourceLoaders = nil
		o.Profiles = nil
		o.PruneUnnecessaryResources = true
		// compose-go would read env_file itself, as plain text; lockstep
		// resolves service environments in resolveEnvironments, which
		// decrypts .age env files.
		o.SkipResolveEnvironment = true
	})
	// An unset variable is the likeliest cause of whatever else failed
	// (an empty port, an empty image), so it is reported first.
	if len(missing.names) > 0 {
		return nil, missingVarError(src, missing.names)
	}
	if loadErr != nil {
		return nil, composeError(src, files, loadErr)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("load %s: %w", opts.ReleaseDir, err)
	}
	if err := resolveEnvironments(cp, src, k, opts.HostFileRoots); err != nil {
		return nil, err
	}
	p, err := convertProject(opts, files, src, cp, k)
	if err != nil {
		return nil, err
	}
	return p, opts.needs.checkCovered(p)
}

func validateOptions(opts LoadOptions) error {
	if !filepath.IsAbs(opts.ReleaseDir) {
		return fmt.Errorf("load: release dir %q is not absolute", opts.ReleaseDir)
	}
	if st, err := os.Stat(opts.ReleaseDir); err != nil || !st.IsDir() {
		return fmt.Errorf("load: release dir %s is not a directory: %w", opts.ReleaseDir, errors.Join(err, os.ErrNotExist))
	}
	if !projectNameRE.MatchString(opts.Project) {
		return &LoadError{Key: "project", Msg: fmt.Sprintf("invalid compose project name %q: use lowercase letters, digits, '-' and '_', starting with a letter or digit", opts.Project)}
	}
	if !commitRE.MatchString(opts.Commit) {
		return fmt.Errorf("load: commit %q is not a full 40-hex SHA", opts.Commit)
	}
	if opts.Environment == "" {
		return errors.New("load: environment name is empty")
	}
	return nil
}

// composeFiles returns the absolute compose files to load: the ones the pin
// names, or compose's discovery at the release root (the first of the
// default names, plus the first matching override file).
func composeFiles(opts LoadOptions) ([]string, error) {
	if len(opts.ComposeFiles) > 0 {
		var out []string
		for _, f := range opts.ComposeFiles {
			if filepath.IsAbs(f) || !within(opts.ReleaseDir, filepath.Join(opts.ReleaseDir, f)) {
				return nil, &LoadError{File: f, Key: "compose_files", Msg: "compose files must be relative paths inside the repository; fix compose_files in the pin file"}
			}
			abs := filepath.Join(opts.ReleaseDir, f)
			if err := opts.needs.need(abs); err != nil {
				return nil, err
			}
			if st, err := os.Stat(abs); err != nil || st.IsDir() {
				return nil, &LoadError{File: filepath.ToSlash(f), Key: "compose_files", Msg: "compose file not found in the release at this commit; fix compose_files in the pin file or add the file", Err: err}
			}
			out = append(out, abs)
		}
		return out, nil
	}
	var needErr error
	first := func(names []string) string {
		for _, n := range names {
			p := filepath.Join(opts.ReleaseDir, n)
			if err := opts.needs.need(p); err != nil {
				needErr = err
				return ""
			}
			if st, err := os.Stat(p); err == nil && !st.IsDir() {
				return p
			}
		}
		return ""
	}
	main := first(defaultFileNames)
	if needErr != nil {
		return nil, needErr
	}
	if main == "" {
		return nil, &LoadError{Msg: fmt.Sprintf("no compose file at the repository root (looked for %s); add one or set compose_files in the pin file", strings.Join(defaultFileNames, ", "))}
	}
	files := []string{main}
	if o := first(defaultOverrideNames); o != "" {
		files = append(files, o)
	}
	if needErr != nil {
		return nil, needErr
	}
	return files, nil
}

func missingVarError(src *sources, names []string) error {
	var errs []error
	for _, n := range names {
		file, line := src.findVariable(n)
		errs = append(errs, &LoadError{File: file, Line: line, Msg: fmt.Sprintf(
			"variable %s is not set and has no default; set it in the release's .env, the pin file's [vars] or env_files, or a host env file, or write ${%s:-default}", n, n)})
	}
	if len(errs) == 1 {
		return errs[0]
	}
	return errors.Join(errs...)
}

var (
	parseErrRE    = regexp.MustCompile(`^failed to parse (\S+?): (.*)$`)
	validateErrRE = regexp.MustCompile(`^validating (\S+?): (.*)$`)
	servicePathRE = regexp.MustCompile(`\bservices\.([A-Za-z0-9_.\-]+?)\.([A-Za-z0-9_\-][A-Za-z0-9_.\-]*)`)
	serviceErrRE  = regexp.MustCompile(`[Ss]ervice "([^"]+)"`)
	keyPathRE     = regexp.MustCompile(`^([A-Za-z0-9_.\-]+)(?:\s|:|$)`)
	// compose-go's refusal of container_name with more than one replica.
	containerNameScaleRE = regexp.MustCompile(`services\.([A-Za-z0-9_.\-]+): can't set container_name and ([A-Za-z0-9_.\-]+) as container name must be unique`)
)

// composeError turns a compose-go error into a *LoadError naming the file
// (and, for schema errors, the key path and its line), keeping compose-go's
// own wording.
func composeError(src *sources, files []string, err error) error {
	msg := err.Error()
	msg = strings.ReplaceAll(msg, src.releaseDir+string(filepath.Separator), "")
	if m := parseErrRE.FindStringSubmatch(msg); m != nil {
		return &LoadError{File: m[1], Line: lineFromMessage(m[2]), Msg: m[2] + "; fix the YAML syntax", Err: err}
	}
	if m := validateErrRE.FindStringSubmatch(msg); m != nil {
		return schemaError(src, m[1], m[2], err)
	}
	if le := containerNameScaleError(src, msg, err); le != nil {
		return le
	}
	// Interpolation and conversion errors carry the key path.
	if m := servicePathRE.FindStringSubmatch(msg); m != nil {
		key := strings.TrimSuffix(m[2], ".")
		le := located(src, m[1], key, msg)
		return &LoadError{File: le.File, Line: le.Line, Service: m[1], Key: key, Msg: msg, Err: err}
	}
	// Consistency errors name the service in compose-go's words; point at
	// where it is defined.
	if m := serviceErrRE.FindStringSubmatch(msg); m != nil {
		if file, line := src.find("services", m[1]); line > 0 {
			msg = strings.TrimPrefix(msg, file+": ")
			return &LoadError{File: file, Line: line, Service: m[1], Msg: msg, Err: err}
		}
	}
	var rels []string
	for _, f := range files {
		rels = append(rels, src.rel(f))
	}
	return &LoadError{File: strings.Join(rels, ","), Msg: msg, Err: err}
}

// containerNameScaleError reads compose-go's refusal of container_name on
// a service with more than one replica, which Docker Compose makes too
// (container names are unique on an engine). compose-go names the service
// and the key the other way round ("services.deploy.replicas: can't set
// container_name and web ..."); either order is read, the service being the
// one the compose files define.
func containerNameScaleError(src *sources, msg string, err error) *LoadError {
	m := containerNameScaleRE.FindStringSubmatch(msg)
	if m == nil {
		return nil
	}
	service, attr := m[1], m[2]
	if _, line := src.find("services", m[2]); line > 0 && (m[1] == "scale" || m[1] == "deploy.replicas") {
		service, attr = m[2], m[1]
	}
	le := located(src, service, "container_name", fmt.Sprintf(
		"container_name cannot be used with more than one replica (%s): container names must be unique on the engine; remove container_name, or set %s to 1",
		attr, attr))
	le.Err = err
	return le
}

// located builds a *LoadError for a service key, finding where the key is
// written.
func located(src *sources, service, key, msg string) *LoadError {
	path := append([]string{"services", service}, strings.Split(key, ".")...)
	file, line := "", 0
	for len(path) > 2 {
		if file, line = src.find(path...); line > 0 {
			break
		}
		path = path[:len(path)-1]
	}
	if line == 0 {
		file, line = src.find("services", service)
	}
	return &LoadError{File: file, Line: line, Service: service, Key: key, Msg: msg}
}

func sortedKeys[M ~map[string]V, V any](m M) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

var warmOnce sync.Once

// Warm compiles the compose specification's JSON schema in the
// background. compose-go compiles it at its first validation, once per
// process, which costs a short-lived `lockstep apply` more than loading a
// 50-service project does; started when the pass is wired, it overlaps
// with the git fetch and the engine connect instead of following them.
func Warm() {
	warmOnce.Do(func() {
		go schema.Validate(map[string]any{"services": map[string]any{}})
	})
}
