package gitsource_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/lockstep-gitops/lockstep/gitsource"
)

const sha = "9fceb02d0ae598e95dc970b74767f19372d61af8"

func TestParsePin(t *testing.T) {
	type problem struct {
		key  string
		line int
		msg  string // substring of the message
	}
	tests := []struct {
		name     string
		doc      string
		want     gitsource.Pin
		problems []problem
	}{
		{
			name: "full SHA only",
			doc:  `commit = "` + sha + `"`,
			want: gitsource.Pin{Commit: sha},
		},
		{
			name: "everything",
			doc: "commit = \"staging\"\ncompose_files = [\"deploy/compose.yaml\", \"./deploy/compose.prod.yaml\"]\npaused = true\n" +
				"env_files = [\"./secrets/production.env.age\", \"deploy/common.env\"]\n" +
				"[vars]\nDOMAIN = \"example.com\"\nREPLICAS = \"3\"\n",
			want: gitsource.Pin{Commit: "staging", ComposeFiles: []string{"deploy/compose.yaml", "deploy/compose.prod.yaml"},
				EnvFiles: []string{"secrets/production.env.age", "deploy/common.env"},
				Vars:     map[string]string{"DOMAIN": "example.com", "REPLICAS": "3"}, Paused: true},
		},
		{name: "tag name", doc: `commit = "v1.2.3"`, want: gitsource.Pin{Commit: "v1.2.3"}},
		{name: "full ref", doc: `commit = "refs/tags/v1"`, want: gitsource.Pin{Commit: "refs/tags/v1"}},
		{name: "hex-looking word without digits is a name", doc: `commit = "deadbeef"`, want: gitsource.Pin{Commit: "deadbeef"}},
		{
			name:     "unknown key with line",
			doc:      "commit = \"main\"\n\ncomit = \"x\"\n",
			problems: []problem{{"comit", 3, "unknown key; allowed keys are commit, compose_files, env_files, paused"}},
		},
		{
			name:     "unknown table",
			doc:      "commit = \"main\"\n[env]\nA = \"b\"\n",
			problems: []problem{{"env", 2, "unknown key"}},
		},
		{
			name:     "every problem at once",
			doc:      "commit = \"9fceb02\"\nextra = 1\ncompose_files = [\"/etc/compose.yaml\"]\n",
			problems: []problem{{"commit", 1, "full 40-hex SHA"}, {"extra", 2, "unknown key"}, {"compose_files[0]", 3, "absolute"}},
		},
		{
			name:     "missing commit",
			doc:      "paused = true\n",
			problems: []problem{{"commit", 0, "missing"}},
		},
		{
			name:     "empty file",
			doc:      "",
			problems: []problem{{"commit", 0, "missing"}},
		},
		{
			name:     "short SHA",
			doc:      `commit = "9fceb02d0ae5"`,
			problems: []problem{{"commit", 1, "abbreviated commit SHA; use the full 40-hex SHA"}},
		},
		{
			name:     "empty commit",
			doc:      `commit = ""`,
			problems: []problem{{"commit", 1, "is empty"}},
		},
		{
			name:     "invalid ref name",
			doc:      `commit = "main branch"`,
			problems: []problem{{"commit", 1, "neither a full 40-hex commit SHA nor a valid branch or tag name"}},
		},
		{
			name:     "commit wrong type",
			doc:      "commit = 1234\n",
			problems: []problem{{"commit", 1, "must be a string"}},
		},
		{
			name:     "paused wrong type",
			doc:      "commit = \"main\"\npaused = \"yes\"\n",
			problems: []problem{{"paused", 2, "must be true or false"}},
		},
		{
			name:     "compose_files not an array",
			doc:      "commit = \"main\"\ncompose_files = \"compose.yaml\"\n",
			problems: []problem{{"compose_files", 2, "must be an array of strings"}},
		},
		{
			name:     "var not a string",
			doc:      "commit = \"main\"\n[vars]\nPORT = 8080\n",
			problems: []problem{{"vars.PORT", 3, "quote numbers"}},
		},
		{
			name:     "invalid var name",
			doc:      "commit = \"main\"\n[vars]\n\"MY-VAR\" = \"x\"\n",
			problems: []problem{{"vars.MY-VAR", 3, "not a valid variable name"}},
		},
		{
			name:     "reserved var name",
			doc:      "commit = \"main\"\n[vars]\nLOCKSTEP_COMMIT = \"x\"\n",
			problems: []problem{{"vars.LOCKSTEP_COMMIT", 3, "reserved"}},
		},
		{
			name: "compose files escaping",
			doc: "commit = \"main\"\ncompose_files = [\n  \"../other/compose.yaml\",\n  \"deploy/../../x.yaml\",\n" +
				"  \"ok.yaml\",\n  \"./ok.yaml\",\n  \"\",\n]\n",
			problems: []problem{
				{"compose_files[0]", 3, "outside the repository"},
				{"compose_files[1]", 4, "outside the repository"},
				{"compose_files[3]", 6, "listed twice"},
				{"compose_files[4]", 7, "is empty"},
			},
		},
		{
			name: "env files escaping, absolute, twice, empty",
			doc: "commit = \"main\"\nenv_files = [\n  \"../secrets.env.age\",\n  \"/etc/lockstep/prod.env\",\n" +
				"  \"secrets/prod.env.age\",\n  \"secrets/./prod.env.age\",\n  \" \",\n  \"secrets\\\\prod.env\",\n]\n",
			problems: []problem{
				{"env_files[0]", 3, "outside the repository"},
				{"env_files[1]", 4, "absolute"},
				{"env_files[3]", 6, "listed twice"},
				{"env_files[4]", 7, "is empty"},
				{"env_files[5]", 8, "backslash"},
			},
		},
		{
			name:     "env files empty list",
			doc:      "commit = \"main\"\nenv_files = []\n",
			problems: []problem{{"env_files", 2, "list at least one env file"}},
		},
		{
			name:     "env files not an array",
			doc:      "commit = \"main\"\nenv_files = \"secrets/prod.env.age\"\n",
			problems: []problem{{"env_files", 2, `must be an array of strings, e.g. ["secrets/production.env.age"]`}},
		},
		{
			name:     "compose files empty list",
			doc:      "commit = \"main\"\ncompose_files = []\n",
			problems: []problem{{"compose_files", 2, "is empty"}},
		},
		{
			name: "bad windows, each with its line",
			doc:  "commit = \"main\"\nwindows = [\n  \"Mon-Fri 09:00-16:00 Europe/Berlin\",\n  \"Mon-Fri 9-16 Europe/Berlin\",\n  \"Sat 10:00-12:00\",\n]\n",
			problems: []problem{
				{"windows[1]", 4, `"9" is not a time`},
				{"windows[2]", 5, "has 2 of its 3 fields"},
			},
		},
		{
			name:     "windows empty list",
			doc:      "commit = \"main\"\nwindows = []\n",
			problems: []problem{{"windows", 2, "would never open"}},
		},
		{
			name:     "windows not an array",
			doc:      "commit = \"main\"\nwindows = \"Mon 09:00-10:00 UTC\"\n",
			problems: []problem{{"windows", 2, `must be an array of strings, e.g. ["Mon-Fri 09:00-16:00 Europe/Berlin"]`}},
		},
		{
			name:     "duplicate key",
			doc:      "commit = \"main\"\ncommit = \"v1\"\n",
			problems: []problem{{"commit", 2, "already defined"}},
		},
		{
			name:     "syntax error",
			doc:      "commit = \n",
			problems: []problem{{"", 1, "not valid TOML"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const file = "environments/production.toml"
			got, err := gitsource.ParsePin(file, []byte(tt.doc))
			if len(tt.problems) == 0 {
				if err != nil {
					t.Fatalf("ParsePin: %v", err)
				}
				tt.want.File = file
				if !reflect.DeepEqual(got, tt.want) {
					t.Fatalf("ParsePin = %+v, want %+v", got, tt.want)
				}
				return
			}
			var pes gitsource.PinErrors
			if !errors.As(err, &pes) {
				t.Fatalf("ParsePin: err = %v, want PinErrors", err)
			}
			if len(pes) != len(tt.problems) {
				t.Fatalf("ParsePin: %d problems, want %d:\n%v", len(pes), len(tt.problems), err)
			}
			for i, p := range tt.problems {
				pe := pes[i]
				if pe.File != file || pe.Key != p.key || pe.Line != p.line || !strings.Contains(pe.Message, p.msg) {
					t.Errorf("problem %d = %+v, want key %q line %d message containing %q", i, pe, p.key, p.line, p.msg)
				}
				if !strings.Contains(err.Error(), file) {
					t.Errorf("error %q does not name the file", err)
				}
			}
			var one *gitsource.PinError
			if !errors.As(err, &one) || one != pes[0] {
				t.Errorf("errors.As(*PinError) does not find the first problem")
			}
		})
	}
}

func TestParsePinWindows(t *testing.T) {
	pin, err := gitsource.ParsePin("environments/production.toml",
		[]byte("commit = \"main\"\nwindows = [\"Mon-Fri 09:00-16:00 Europe/Berlin\", \"Sat 22:00-02:00 UTC\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(pin.Windows) != 2 || pin.Windows[0].String() != "Mon-Fri 09:00-16:00 Europe/Berlin" || pin.Windows[1].Location().String() != "UTC" {
		t.Fatalf("Windows = %v", pin.Windows)
	}
}

func TestPinErrorText(t *testing.T) {
	_, err := gitsource.ParsePin("environments/production.toml", []byte("commit = \"main\"\n\nfoo = 1\n"))
	want := "environments/production.toml:3: foo: unknown key; allowed keys are commit, compose_files, env_files, paused, windows and the [vars] table"
	if err == nil || err.Error() != want {
		t.Fatalf("error = %v\nwant    %s", err, want)
	}
}
