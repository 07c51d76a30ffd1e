package config

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	toml "github.com/pelletier/go-toml/v2"
)

// file is the document as written. Leaves are `any` so that a value of the
// wrong type is one more problem in the list instead of the decoder stopping
// at it; the checks below turn each leaf into its typed Config field. The
// toml tags are the one list of accepted keys: unknown-key hints and the test
// that config.example.toml mentions every key both read them.
type file struct {
	StateDir     any               `toml:"state_dir"`
	Repo         fileRepo          `toml:"repo"`
	Engine       fileEngine        `toml:"engine"`
	Log          fileLog           `toml:"log"`
	Agent        fileAgent         `toml:"agent"`
	API          fileAPI           `toml:"api"`
	Webhook      fileWebhook       `toml:"webhook"`
	Health       fileHealth        `toml:"health"`
	Notify       []fileNotify      `toml:"notify"`
	Environments []fileEnvironment `toml:"environment"`
	Policy       filePolicy        `toml:"policy"`
	Secrets      fileSecrets       `toml:"secrets"`
	Compose      fileCompose       `toml:"compose"`
	Forge        fileForge         `toml:"forge"`

	// [[environment_set]]: review environments (sets.go).
	Sets []fileEnvironmentSet `toml:"environment_set"`
}

type fileCompose struct {
	Strict any `toml:"strict"`
}

type fileSecrets struct {
	AgeIdentity any `toml:"age_identity"`
	RuntimeDir  any `toml:"runtime_dir"`
}

type fileVerify struct {
	Commits           any `toml:"commits"`
	OpenPGPKeyring    any `toml:"openpgp_keyring"`
	SSHAllowedSigners any `toml:"ssh_allowed_signers"`
}

type filePolicy struct {
	Mode              any `toml:"mode"`
	AllowPrivileged   any `toml:"allow_privileged"`
	AllowHostNetwork  any `toml:"allow_host_network"`
	AllowHostPID      any `toml:"allow_host_pid"`
	AllowHostIPC      any `toml:"allow_host_ipc"`
	AllowCapabilities any `toml:"allow_capabilities"`
	AllowDevices      any `toml:"allow_devices"`
	AllowDockerSocket any `toml:"allow_docker_socket"`
	AllowedBindRoots  any `toml:"allowed_bind_roots"`
}

type fileHealth struct {
	Timeout any `toml:"timeout"`
	Bake    any `toml:"bake"`
}

type fileNotify struct {
	Kind    any `toml:"kind"`
	URLFile any `toml:"url_file"`
	Events  any `toml:"events"`
}

type fileAgent struct {
	DriftInterval any `toml:"drift_interval"`
	ShutdownGrace any `toml:"shutdown_grace"`
}

type fileAPI struct {
	Socket any `toml:"socket"`
	Listen any `toml:"listen"`
}

type fileWebhook struct {
	Listen     any `toml:"listen"`
	SecretFile any `toml:"secret_file"`
}

type fileRepo struct {
	URL                  any `toml:"url"`
	Branch               any `toml:"branch"`
	PollInterval         any `toml:"poll_interval"`
	Timeout              any `toml:"timeout"`
	TokenFile            any `toml:"token_file"`
	SSHKey               any `toml:"ssh_key"`
	SSHKeyPassphraseFile any `toml:"ssh_key_passphrase_file"`
	KnownHosts           any `toml:"known_hosts"`
	// Verify is decoded as a table; a value of another type is a decode
	// error that names the key.
	Verify fileVerify `toml:"verify"`
}

type fileEngine struct {
	Host any `toml:"host"`
}

type fileLog struct {
	Level  any `toml:"level"`
	Format any `toml:"format"`
}

type fileEnvironment struct {
	HealthTimeout any `toml:"health_timeout"`
	Bake          any `toml:"bake"`
	Name          any `toml:"name"`
	PinFile       any `toml:"pin_file"`
	ComposeFiles  any `toml:"compose_files"`
	Project       any `toml:"project"`
	EnvFiles      any `toml:"env_files"`
	MinCommit     any `toml:"min_commit"`
	Windows       any `toml:"windows"`
	Backend       any `toml:"backend"`
}

// Parse decodes and validates a config document. path is only used to
// label problems. On any problem it returns a nil Config and an *Error
// holding all of them.
func Parse(path string, data []byte) (*Config, error) {
	lines := indexLines(data)
	c := &checker{lines: lines}

	var f file
	dec := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		var strict *toml.StrictMissingError
		var decode *toml.DecodeError
		switch {
		case errors.As(err, &strict):
			// Unknown keys do not stop decoding: the rest of the file is
			// checked too, so all problems come out at once.
			for i := range strict.Errors {
				c.unknown(&strict.Errors[i])
			}
		case errors.As(err, &decode):
			// A syntax error (or a table where a value belongs) leaves
			// nothing reliable to check further.
			line, _ := decode.Position()
			return nil, &Error{Path: path, Problems: []Problem{{
				Key:  displayKey(decode.Key(), line, lines),
				Line: line,
				Msg:  strings.TrimPrefix(decode.Error(), "toml: "),
			}}}
		default:
			return nil, &Error{Path: path, Problems: []Problem{{Msg: err.Error()}}}
		}
	}

	cfg := c.build(&f)
	if len(c.problems) > 0 {
		sortProblems(c.problems)
		return nil, &Error{Path: path, Problems: c.problems}
	}
	cfg.Path = path
	return cfg, nil
}

// key names one value for problems: display is what the operator reads
// ("[repo].url"), path is its entry in the line index ("repo.url").
type key struct{ display, path string }

func topKey(name string) key { return key{name, name} }

func tableKey(table, name string) key {
	return key{"[" + table + "]." + name, table + "." + name}
}

func envKey(i int, name string) key {
	n := strconv.Itoa(i)
	return key{"[[environment]][" + n + "]." + name, "environment." + n + "." + name}
}

// checker accumulates problems while turning the decoded document into a
// Config.
type checker struct {
	lines    lineIndex
	problems []Problem
}

func (c *checker) add(k key, format string, args ...any) {
	c.problems = append(c.problems, Problem{Key: k.display, Line: c.lines.line(k.path), Msg: fmt.Sprintf(format, args...)})
}

// str returns v as a string, def when it is absent. A value of another
// type is a problem; def is returned so later checks can go on.
func (c *checker) str(k key, v any, def string) string {
	switch v := v.(type) {
	case nil:
		return def
	case string:
		return v
	default:
		c.add(k, "must be a string, got %s", describe(v))
		return def
	}
}

// strings returns v as a list of strings. A list with any element of
// another type is returned as nil after reporting each such element, so
// that later checks never see shifted indexes.
func (c *checker) strings(k key, v any) []string {
	if v == nil {
		return nil
	}
	list, ok := v.([]any)
	if !ok {
		c.add(k, "must be an array of strings, got %s", describe(v))
		return nil
	}
	out := make([]string, 0, len(list))
	bad := false
	for i, e := range list {
		s, ok := e.(string)
		if !ok {
			c.add(k, "element %d: must be a string, got %s", i, describe(e))
			bad = true
			continue
		}
		out = append(out, s)
	}
	if bad {
		return nil
	}
	return out
}

// boolean returns v as a bool, def when it is absent.
func (c *checker) boolean(k key, v any, def bool) bool {
	switch v := v.(type) {
	case nil:
		return def
	case bool:
		return v
	default:
		c.add(k, "must be true or false, got %s", describe(v))
		return def
	}
}

// duration returns v, a Go duration string, as a time.Duration of at least
// min.
func (c *checker) duration(k key, v any, def, min time.Duration) time.Duration {
	if v == nil {
		return def
	}
	s, ok := v.(string)
	if !ok {
		c.add(k, "must be a duration string such as \"30s\" or \"5m\", got %s", describe(v))
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		c.add(k, "%q is not a duration: write it like \"30s\", \"5m\" or \"1h30m\"", s)
		return def
	}
	if d < min {
		c.add(k, "must be at least %s, got %q", min, s)
		return def
	}
	return d
}

// describe names a decoded TOML value's type, and the value itself for
// scalars, for "got ..." messages. Config values are paths and settings,
// never secrets, so echoing them is safe.
func describe(v any) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("string %q", v)
	case int64:
		return fmt.Sprintf("integer %d", v)
	case float64:
		return fmt.Sprintf("float %v", v)
	case bool:
		return fmt.Sprintf("boolean %t", v)
	case []any:
		return "an array"
	case map[string]any:
		return "a table"
	default:
		return fmt.Sprintf("a %s", reflect.TypeOf(v))
	}
}

// unknown records a key or table the schema does not have, with a hint
// when one is likely to help.
func (c *checker) unknown(e *toml.DecodeError) {
	line, _ := e.Position()
	parts := e.Key()
	name := ""
	if len(parts) > 0 {
		name = parts[len(parts)-1]
	}
	what := "key"
	if c.lines.tables[strings.Join(parts, ".")] {
		what = "table"
	}
	msg := fmt.Sprintf("unknown %s `%s`", what, name)
	if hint := unknownHint(parts); hint != "" {
		msg += "; " + hint
	}
	c.problems = append(c.problems, Problem{Key: displayKey(parts, line, c.lines), Line: line, Msg: msg})
}

// displayKey renders a decoder key path the way problems name keys. The
// decoder does not say which [[environment]] element a key is in; the line
// does.
func displayKey(parts []string, line int, lines lineIndex) string {
	switch len(parts) {
	case 0:
		return ""
	case 1:
		if lines.tables[parts[0]] {
			return "[" + parts[0] + "]"
		}
		return parts[0]
	}
	head, rest := parts[0], strings.Join(parts[1:], ".")
	if head == "environment" || head == "environment_set" {
		if i, ok := lines.element(head, line); ok {
			return "[[" + head + "]][" + strconv.Itoa(i) + "]." + rest
		}
		return "[[" + head + "]]." + rest
	}
	return "[" + head + "]." + rest
}

// secretHint returns, for a key people write when they mean to give a
// secret inline, the file-based key to use instead: lockstep reads secrets
// from files only.
func secretHint(name string) string {
	switch name {
	case "token", "password":
		return "tokens are read from files: use `token_file`"
	case "ssh_key_passphrase", "passphrase":
		return "passphrases are read from files: use `ssh_key_passphrase_file`"
	}
	return ""
}

// unknownHint returns a hint for an unknown key: the file-based key for an
// inline secret, else the closest valid key when it is a likely typo.
func unknownHint(parts []string) string {
	if len(parts) == 0 {
		return ""
	}
	name := parts[len(parts)-1]
	if h := secretHint(name); h != "" {
		return h
	}
	valid := keysAt(reflect.TypeFor[file](), parts[:len(parts)-1])
	// Short names are a small edit away from many words; only call a one
	// edit slip a typo for them.
	maxDist := 2
	if len(name) <= 4 {
		maxDist = 1
	}
	best, bestDist := "", maxDist+1
	for _, v := range valid {
		if d := editDistance(name, v); d < bestDist {
			best, bestDist = v, d
		}
	}
	if best != "" {
		return fmt.Sprintf("did you mean `%s`?", best)
	}
	if len(valid) > 0 {
		return "valid keys here: " + strings.Join(valid, ", ")
	}
	return ""
}

// keysAt lists the toml keys of the struct reached from t by following
// table names; nil when the path leads nowhere known.
func keysAt(t reflect.Type, tables []string) []string {
	for _, name := range tables {
		for t.Kind() == reflect.Slice {
			t = t.Elem()
		}
		f, ok := fieldByTag(t, name)
		if !ok {
			return nil
		}
		t = f.Type
	}
	for t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	var keys []string
	for i := range t.NumField() {
		if tag := t.Field(i).Tag.Get("toml"); tag != "" && tag != "-" {
			keys = append(keys, tag)
		}
	}
	return keys
}

func fieldByTag(t reflect.Type, tag string) (reflect.StructField, bool) {
	if t.Kind() != reflect.Struct {
		return reflect.StructField{}, false
	}
	for i := range t.NumField() {
		if f := t.Field(i); f.Tag.Get("toml") == tag {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// editDistance is the optimal string alignment distance between a and b:
// insertions, deletions, substitutions and swaps of two adjacent letters
// (the commonest typo, "brnach") each count one. Keys are short, so the
// quadratic table is fine.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
