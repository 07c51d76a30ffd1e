package compose

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/compose-spec/compose-go/v2/template"

	"github.com/lockstep-gitops/lockstep/gitsource"
)

// Built-in interpolation variables, always set, always winning.
const (
	VarCommit      = "LOCKSTEP_COMMIT"
	VarCommitShort = "LOCKSTEP_COMMIT_SHORT"
	VarEnvironment = "LOCKSTEP_ENVIRONMENT"
	// VarSet is the [[environment_set]] of a review environment, "" for a
	// fixed one; VarSlug its pin file's stem (pr-142), the environment
	// name for a fixed one: what a reverse proxy's host rule is made of;
	// VarURL the set's url expanded, "" when it names none.
	VarSet  = "LOCKSTEP_SET"
	VarSlug = "LOCKSTEP_SLUG"
	VarURL  = "LOCKSTEP_URL"
)

// interpolationEnv builds the only environment compose files are
// interpolated with (design §2), lowest precedence first:
//
//  1. the release's .env;
//  2. the release's .env.age, decrypted, when present;
//  3. the pin file's [vars];
//  4. the pin file's env_files (opts.RepoEnvFiles), in order, .age ones
//     decrypted;
//  5. the host env files (opts.HostEnvFiles), in order, .age ones
//     decrypted;
//  6. the built-ins (LOCKSTEP_COMMIT, LOCKSTEP_COMMIT_SHORT,
//     LOCKSTEP_ENVIRONMENT, LOCKSTEP_SET, LOCKSTEP_SLUG, LOCKSTEP_URL).
//
// A file may refer to variables set by the sources before it (FOO=${BAR}).
// The daemon's own process environment is deliberately absent: a variable
// set on the host by accident must never change what gets deployed.
func interpolationEnv(opts LoadOptions, k *keyring) (map[string]string, error) {
	env := map[string]string{}

	for _, name := range []string{".env", ".env.age"} {
		abs := filepath.Join(opts.ReleaseDir, name)
		if err := opts.needs.need(abs); err != nil {
			return nil, err
		}
		if _, err := os.Lstat(abs); err != nil {
			continue
		}
		if err := releaseFileInside(opts.ReleaseDir, name); err != nil {
			return nil, err
		}
		if st, err := os.Stat(abs); err != nil || st.IsDir() {
			continue
		}
		vars, err := readEnvSource(k, abs, name, env)
		if err != nil {
			return nil, envFileError(err, name, "", "fix the syntax of the release's "+name+" file")
		}
		k.setVars(env, vars, name)
	}
	k.setVars(env, opts.PinVars, "")
	for _, rel := range opts.RepoEnvFiles {
		if err := releaseFileInside(opts.ReleaseDir, rel); err != nil {
			return nil, err
		}
		abs := filepath.Join(opts.ReleaseDir, filepath.FromSlash(rel))
		if err := opts.needs.need(abs); err != nil {
			return nil, err
		}
		if st, err := os.Stat(abs); err != nil || st.IsDir() {
			return nil, &LoadError{File: filepath.ToSlash(rel), Key: "env_files", Msg: "env file named by the pin file's env_files is not in the release at this commit; add it to the repository or fix env_files in the pin file", Err: err}
		}
		vars, err := readEnvSource(k, abs, filepath.ToSlash(rel), env)
		if err != nil {
			return nil, envFileError(err, filepath.ToSlash(rel), "env_files", "fix the file, or env_files in the pin file")
		}
		k.setVars(env, vars, filepath.ToSlash(rel))
	}
	for _, f := range opts.HostEnvFiles {
		vars, err := readEnvSource(k, f, f, env)
		if err != nil {
			return nil, envFileError(err, f, "", "fix or remove this host env file in the agent config")
		}
		k.setVars(env, vars, f)
	}
	slug := opts.Slug
	if slug == "" {
		slug = opts.Environment
	}
	k.setVars(env, map[string]string{
		VarCommit:      opts.Commit,
		VarCommitShort: opts.Commit[:12],
		VarEnvironment: opts.Environment,
		VarSet:         opts.Set,
		VarSlug:        slug,
		VarURL:         opts.URL,
	}, "")
	k.markDerived(env)
	return env, nil
}

// releaseFileInside refuses a release-relative path that is absolute,
// climbs out with "..", or resolves through a symlink to outside the
// release: the loader must never read a host file named by the repository.
func releaseFileInside(releaseDir, rel string) error {
	abs := filepath.Join(releaseDir, filepath.FromSlash(rel))
	if filepath.IsAbs(rel) || !within(releaseDir, abs) {
		return &LoadError{File: filepath.ToSlash(rel), Key: "env_files", Msg: "env files must be relative paths inside the repository; fix env_files in the pin file"}
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return nil // missing: the caller says so in its own words
	}
	root, err := filepath.EvalSymlinks(releaseDir)
	if err != nil || !within(root, real) {
		return &LoadError{File: filepath.ToSlash(rel), Msg: "resolves through a symlink to outside the release; only repository content can be read"}
	}
	return nil
}

// envFileError turns a readEnvSource error into a *LoadError naming the
// file and the key that names it (if any); one that already is a
// *LoadError (decryption, syntax of a decrypted file) keeps its message.
func envFileError(err error, file, key, todo string) error {
	var le *LoadError
	if errors.As(err, &le) {
		if key == "" || strings.HasPrefix(le.Key, "[secrets]") {
			return le
		}
		out := *le
		out.Key = key
		return &out
	}
	return &LoadError{File: file, Line: lineFromMessage(err.Error()), Key: key, Msg: err.Error() + "; " + todo, Err: err}
}

// readEnvSource reads one dotenv file, decrypting it first when its name
// ends in .age. shown names it in messages.
func readEnvSource(k *keyring, abs, shown string, lower map[string]string) (map[string]string, error) {
	if !isEncrypted(abs) {
		return readEnvFile(abs, lower)
	}
	plain, err := k.decrypt(abs, shown)
	if err != nil {
		return nil, err
	}
	vars := map[string]string{}
	err = dotenv.ParseWithFormat(bytes.NewReader(plain), shown, vars, lookupIn(lower), "")
	if err != nil {
		return nil, secretSyntaxError(shown, err)
	}
	k.remember(shown, vars)
	return vars, nil
}

// secretSyntaxError reports a dotenv error in a decrypted file by line
// only: the parser quotes the offending text, which is secret.
func secretSyntaxError(file string, err error) error {
	line := lineFromMessage(err.Error())
	return &LoadError{File: file, Line: line, Msg: "invalid dotenv syntax or variable reference in the decrypted content (details withheld: the file is encrypted); decrypt it locally (age -d) and fix it"}
}

func lookupIn(m map[string]string) dotenv.LookupFn {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

// readEnvFile parses one dotenv file with compose-go's parser. Variables
// referenced inside it (FOO=${BAR}) resolve against what lower-precedence
// sources set so far, never against the process environment.
func readEnvFile(path string, lower map[string]string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := envFileSize(f); err != nil {
		return nil, err
	}
	vars, err := dotenv.ParseWithLookup(f, lookupIn(lower))
	if err != nil {
		return nil, fmt.Errorf("parse env file: %w", err)
	}
	return vars, nil
}

// envFileSize refuses an env file over gitsource.MaxEnvFileBytes before
// it is parsed.
func envFileSize(f *os.File) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.Size() > gitsource.MaxEnvFileBytes {
		return fmt.Errorf("env file of %d bytes is over lockstep's limit of %d bytes; split it or move the data out of the repository", st.Size(), gitsource.MaxEnvFileBytes)
	}
	return nil
}

// missingVars records the variables that interpolation met with no value
// and no default. compose-go only logs a warning and substitutes "" for
// them; lockstep turns each into an error, because an empty image tag or
// port deployed silently is worse than a deploy that refuses to start.
type missingVars struct {
	names []string // in the order first met
}

// substitute is an interp.Options.Substitute: compose's own substitution,
// with a replacement function that notices unset variables.
func (m *missingVars) substitute(s string, mapping template.Mapping) (string, error) {
	return template.SubstituteWithOptions(s, mapping,
		template.WithoutLogging,
		template.WithReplacementFunction(m.replace))
}

// replace handles one `$NAME`, `${NAME}`, `${NAME<op>arg}` or `$$`
// occurrence. compose-go's default function resolves nested templates (the
// arg of a default, or what follows the closing brace in the same match)
// with its own logging substitution, which would let an unset variable
// there slip through; so the head is evaluated by compose-go and the rest
// is fed back through m.substitute.
func (m *missingVars) replace(substring string, mapping template.Mapping, cfg *template.Config) (string, error) {
	head, rest := substring, ""
	if i := closingBrace(substring); i >= 0 {
		head, rest = substring[:i+1], substring[i+1:]
	}
	value, applied, err := template.DefaultReplacementAppliedFunc(head, mapping, cfg)
	if err != nil {
		return "", err
	}
	name, op, arg := splitSubstitution(head)
	switch {
	case !applied && name != "":
		m.add(name)
	case op != "" && arg != "":
		v, set := mapping(name)
		usesArg := false
		switch op {
		case "-":
			usesArg = !set
		case ":-":
			usesArg = !set || v == ""
		case "+":
			usesArg = set
		case ":+":
			usesArg = set && v != ""
		}
		if usesArg {
			// Only to record unset variables inside the arg; the value
			// itself comes from compose-go above.
			if _, err := m.substitute(arg, mapping); err != nil {
				return "", err
			}
		}
	}
	if rest != "" {
		r, err := m.substitute(rest, mapping)
		if err != nil {
			return "", err
		}
		value += r
	}
	return value, nil
}

func (m *missingVars) add(name string) {
	if !slices.Contains(m.names, name) {
		m.names = append(m.names, name)
	}
}

// splitSubstitution splits "$NAME" or "${NAME<op><arg>}" (op one of
// :- - :+ + :? ?). "$$" and invalid templates yield an empty name.
func splitSubstitution(s string) (name, op, arg string) {
	if !strings.HasPrefix(s, "$") || strings.HasPrefix(s, "$$") {
		return "", "", ""
	}
	if !strings.HasPrefix(s, "${") {
		return s[1:], "", ""
	}
	inner := strings.TrimSuffix(s[2:], "}")
	i := strings.IndexFunc(inner, func(r rune) bool {
		return !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
	})
	if i < 0 {
		return inner, "", ""
	}
	name, tail := inner[:i], inner[i:]
	for _, candidate := range []string{":-", ":+", ":?", "-", "+", "?"} {
		if strings.HasPrefix(tail, candidate) {
			return name, candidate, tail[len(candidate):]
		}
	}
	return name, "", ""
}

// closingBrace returns the index of the brace closing the "${" that starts
// s, or -1 (same rule as compose-go's template package).
func closingBrace(s string) int {
	depth := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '}':
			depth--
			if depth == 0 {
				return i
			}
		case '{':
			depth++
			i++
		}
	}
	return -1
}
