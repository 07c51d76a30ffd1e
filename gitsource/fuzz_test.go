package gitsource_test

import (
	"errors"
	"path"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
	toml "github.com/pelletier/go-toml/v2"

	"github.com/lockstep-gitops/lockstep/gitsource"
)

var (
	fuzzFullSHA = regexp.MustCompile(`^[0-9a-fA-F]{40}$`)
	fuzzVarName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// FuzzParsePin feeds arbitrary pin files to gitsource.ParsePin. A pin file
// is written by whoever can merge to the branch, so the agent must survive
// any of them: ParsePin never panics; what it accepts is a pin the resolver
// and the compose loader can use without re-checking (a commit that is a
// full SHA or a valid ref name, compose files inside the repository and
// listed once, variable names lockstep does not reserve) and reads back the
// same after being written out again; what it refuses is a zero Pin and
// PinErrors naming the file, each with a message; the same bytes always
// give the same answer.
//
// Seeds: the f.Add documents below and testdata/fuzz/FuzzParsePin.
func FuzzParsePin(f *testing.F) {
	f.Add(`commit = "9fceb02d0ae598e95dc970b74767f19372d61af8"`)
	f.Add("commit = \"staging\"\ncompose_files = [\"deploy/compose.yaml\", \"./deploy/compose.prod.yaml\"]\npaused = true\n" +
		"[vars]\nDOMAIN = \"example.com\"\nREPLICAS = \"3\"\n")
	f.Add("commit = \"9fceb02\"\nextra = 1\ncompose_files = [\"/etc/compose.yaml\", \"../x\", \"a\\\\b\", \"a\", \"./a\"]\n")
	f.Add("commit = 1\n")
	f.Add("paused = \"yes\"\n[vars]\nLOCKSTEP_COMMIT = \"x\"\n\"1bad\" = \"y\"\n")
	f.Add("commit = \"refs/tags/v1.2.3\"\ncompose_files = []\n")
	f.Add("commit = \"main\"\nenv_files = [\"secrets/prod.env.age\", \"./secrets/prod.env.age\", \"../x.env\", \"/etc/x.env\"]\n")
	f.Add("commit = \"main\"\nenv_files = [\"secrets/prod.env.age\", \"common.env\"]\n")
	f.Add("commit = \" main\"\n[vars\n")

	f.Fuzz(func(t *testing.T, doc string) {
		const file = "environments/production.toml"
		pin, err := gitsource.ParsePin(file, []byte(doc))

		pin2, err2 := gitsource.ParsePin(file, []byte(doc))
		if !reflect.DeepEqual(pin, pin2) || fuzzErrString(err) != fuzzErrString(err2) {
			t.Fatalf("two parses of the same pin differ:\n%+v / %v\n%+v / %v", pin, err, pin2, err2)
		}

		if err != nil {
			checkPinRefusal(t, file, pin, err)
			return
		}
		checkPin(t, file, pin)

		// Written back out, the pin means the same thing: nothing in an
		// accepted pin depends on how the TOML was spelled.
		out, merr := toml.Marshal(struct {
			Commit       string            `toml:"commit"`
			ComposeFiles []string          `toml:"compose_files,omitempty"`
			EnvFiles     []string          `toml:"env_files,omitempty"`
			Paused       bool              `toml:"paused"`
			Vars         map[string]string `toml:"vars,omitempty"`
		}{pin.Commit, pin.ComposeFiles, pin.EnvFiles, pin.Paused, pin.Vars})
		if merr != nil {
			t.Fatalf("marshal accepted pin %+v: %v", pin, merr)
		}
		again, err := gitsource.ParsePin(file, out)
		if err != nil {
			t.Fatalf("accepted pin %+v, written as\n%s\nis refused: %v", pin, out, err)
		}
		if len(pin.Vars) == 0 {
			// An empty [vars] table and no table mean the same.
			again.Vars = pin.Vars
		}
		if !reflect.DeepEqual(pin, again) {
			t.Fatalf("pin changed on a round trip:\n%+v\n%+v", pin, again)
		}
	})
}

func fuzzErrString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func checkPinRefusal(t *testing.T, file string, pin gitsource.Pin, err error) {
	t.Helper()
	if !reflect.DeepEqual(pin, gitsource.Pin{}) {
		t.Fatalf("error %v returned with a non-zero pin %+v", err, pin)
	}
	var pes gitsource.PinErrors
	if !errors.As(err, &pes) || len(pes) == 0 {
		t.Fatalf("error %T %q is not a non-empty PinErrors", err, err)
	}
	var first *gitsource.PinError
	if !errors.As(err, &first) || first != pes[0] {
		t.Fatalf("errors.As(*PinError) does not find the first problem of %v", err)
	}
	for i, pe := range pes {
		if pe == nil || pe.File != file || strings.TrimSpace(pe.Message) == "" || pe.Line < 0 {
			t.Fatalf("problem %d does not say where and what: %#v", i, pe)
		}
		if !strings.Contains(err.Error(), pe.Error()) {
			t.Fatalf("problem %d %q missing from the error text %q", i, pe.Error(), err.Error())
		}
	}
}

func checkPin(t *testing.T, file string, pin gitsource.Pin) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("accepted pin breaks an invariant: "+format, args...)
	}
	if pin.File != file {
		fail("File %q, want %q", pin.File, file)
	}
	c := pin.Commit
	if c == "" || strings.TrimSpace(c) != c {
		fail("commit %q is empty or padded", c)
	}
	if !fuzzFullSHA.MatchString(c) {
		ref := c
		if !strings.HasPrefix(ref, "refs/") {
			ref = "refs/heads/" + ref
		}
		if err := plumbing.ReferenceName(ref).Validate(); err != nil {
			fail("commit %q is neither a full SHA nor a valid ref name: %v", c, err)
		}
	}
	seen := map[string]bool{}
	for _, p := range pin.ComposeFiles {
		if p == "" || path.IsAbs(p) || path.Clean(p) != p || p == "." || p == ".." ||
			strings.HasPrefix(p, "../") || strings.Contains(p, `\`) || seen[p] {
			fail("compose file %q is not a clean, unique path inside the repository (%q)", p, pin.ComposeFiles)
		}
		seen[p] = true
	}
	if pin.ComposeFiles != nil && len(pin.ComposeFiles) == 0 {
		fail("compose_files present but empty")
	}
	seen = map[string]bool{}
	for _, p := range pin.EnvFiles {
		if p == "" || path.IsAbs(p) || path.Clean(p) != p || p == "." || p == ".." ||
			strings.HasPrefix(p, "../") || strings.Contains(p, `\`) || seen[p] {
			fail("env file %q is not a clean, unique path inside the repository (%q)", p, pin.EnvFiles)
		}
		seen[p] = true
	}
	if pin.EnvFiles != nil && len(pin.EnvFiles) == 0 {
		fail("env_files present but empty")
	}
	for name := range pin.Vars {
		if !fuzzVarName.MatchString(name) || strings.HasPrefix(name, "LOCKSTEP_") {
			fail("variable name %q", name)
		}
	}
}
