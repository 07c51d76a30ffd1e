package compose

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/compose-spec/compose-go/v2/template"
)

// Built-in interpolation variables, always set, always winning.
const (
	VarCommit      = "LOCKSTEP_COMMIT"
	VarCommitShort = "LOCKSTEP_COMMIT_SHORT"
	VarEnvironment = "LOCKSTEP_ENVIRONMENT"
)

// interpolationEnv builds the only environment compose files are
// interpolated with (design §2), lowest precedence first: the release's
// .env, the pin file's [vars], the host env files in order, the built-ins.
// The daemon's own process environment is deliberately absent: a variable
// set on the host by accident must never change what gets deployed.
func interpolationEnv(opts LoadOptions) (map[string]string, error) {
	env := map[string]string{}

	dotEnv := filepath.Join(opts.ReleaseDir, ".env")
	if st, err := os.Stat(dotEnv); err == nil && !st.IsDir() {
		vars, err := readEnvFile(dotEnv, env)
		if err != nil {
			return nil, &LoadError{File: ".env", Line: lineFromMessage(err.Error()), Msg: err.Error() + "; fix the syntax of the release's .env file", Err: err}
		}
		maps.Copy(env, vars)
	}
	maps.Copy(env, opts.PinVars)
	for _, f := range opts.HostEnvFiles {
		vars, err := readEnvFile(f, env)
		if err != nil {
			return nil, &LoadError{File: f, Line: lineFromMessage(err.Error()), Msg: err.Error() + "; fix or remove this host env file in the agent config", Err: err}
		}
		maps.Copy(env, vars)
	}
	env[VarCommit] = opts.Commit
	env[VarCommitShort] = opts.Commit[:12]
	env[VarEnvironment] = opts.Environment
	return env, nil
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
	vars, err := dotenv.ParseWithLookup(f, func(k string) (string, bool) {
		v, ok := lower[k]
		return v, ok
	})
	if err != nil {
		return nil, fmt.Errorf("parse env file: %w", err)
	}
	return vars, nil
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
