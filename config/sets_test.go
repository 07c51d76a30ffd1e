package config

import (
	"strings"
	"testing"
	"time"
)

const setRepo = "[repo]\nurl = \"https://git.example.com/x.git\"\n"

func TestEnvironmentSetDefaults(t *testing.T) {
	cfg, err := Parse("x.toml", []byte(setRepo+`
[[environment_set]]
name = "review"
pins = "environments/review/*.toml"
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Environments) != 0 || len(cfg.EnvironmentSets) != 1 {
		t.Fatalf("a set alone is a valid config: %+v", cfg)
	}
	s := cfg.EnvironmentSets[0]
	if s.Max != 10 || s.RemoveVolumes || s.TTL != 0 || s.URL != "" || s.HealthTimeout != DefaultHealthTimeout || s.Bake != DefaultBake {
		t.Errorf("defaults: %+v", s)
	}
	if spec := s.Spec(); spec.Dir() != "environments/review" || spec.Pattern() != "*.toml" {
		t.Errorf("spec: %+v", spec)
	}
}

func TestEnvironmentSetProblems(t *testing.T) {
	tests := []struct{ name, doc, want string }{
		{"no name", "[[environment_set]]\npins = \"r/*.toml\"\n", `[[environment_set]][0].name: required`},
		{"bad name", "[[environment_set]]\nname = \"Review\"\npins = \"r/*.toml\"\n", `x.toml:4: [[environment_set]][0].name: "Review" is not a valid name`},
		{"no pins", "[[environment_set]]\nname = \"review\"\n", `[[environment_set]][0].pins: required`},
		{"wildcard dir", "[[environment_set]]\nname = \"review\"\npins = \"r/*/x.toml\"\n", `x.toml:5: [[environment_set]][0].pins: "r/*/x.toml": wildcards are allowed in the file name only`},
		{"not toml", "[[environment_set]]\nname = \"review\"\npins = \"r/*\"\n", `must end in .toml`},
		{"outside", "[[environment_set]]\nname = \"review\"\npins = \"../r/*.toml\"\n", `[[environment_set]][0].pins: must be a file inside the repository`},
		{"max", "[[environment_set]]\nname = \"review\"\npins = \"r/*.toml\"\nmax = 0\n", `x.toml:6: [[environment_set]][0].max: must be at least 1, got 0`},
		{"max type", "[[environment_set]]\nname = \"review\"\npins = \"r/*.toml\"\nmax = \"3\"\n", `[[environment_set]][0].max: must be an integer, got string "3"`},
		{"ttl", "[[environment_set]]\nname = \"review\"\npins = \"r/*.toml\"\nttl = \"soon\"\n", `[[environment_set]][0].ttl: "soon" is not a duration`},
		{"url var", "[[environment_set]]\nname = \"review\"\npins = \"r/*.toml\"\nurl = \"https://${PR}.x\"\n", `[[environment_set]][0].url: ${PR} is not a variable a set's url may use`},
		{"url", "[[environment_set]]\nname = \"review\"\npins = \"r/*.toml\"\nurl = \"${LOCKSTEP_SLUG}.x\"\n", `[[environment_set]][0].url: "${LOCKSTEP_SLUG}.x" is not an http(s) URL`},
		{"env file", "[[environment_set]]\nname = \"review\"\npins = \"r/*.toml\"\nenv_files = [\"r.env\"]\n", `[[environment_set]][0].env_files: element 0: must be an absolute path`},
		{"windows", "[[environment_set]]\nname = \"review\"\npins = \"r/*.toml\"\nwindows = [\"Mon 9-5\"]\n", `x.toml:6: [[environment_set]][0].windows: element 0:`},
		{"no windows", "[[environment_set]]\nname = \"review\"\npins = \"r/*.toml\"\nwindows = []\n", `[[environment_set]][0].windows: is empty, which would never open`},
		{"typo", "[[environment_set]]\nname = \"review\"\npins = \"r/*.toml\"\nmax_envs = 3\n", "[[environment_set]][0].max_envs: unknown key `max_envs`"},
		{"fixed name", "[[environment]]\nname = \"review\"\n[[environment_set]]\nname = \"review\"\npins = \"r/*.toml\"\n", `"review" is also the name of a fixed [[environment]]`},
		{"fixed prefix", "[[environment]]\nname = \"review-ops\"\n[[environment_set]]\nname = \"review\"\npins = \"r/*.toml\"\n", `"review" makes ambiguous names: [[environment]][0] "review-ops" (project "review-ops") could also be one of this set's`},
		{"prefix", "[[environment_set]]\nname = \"review\"\npins = \"r/*.toml\"\n[[environment_set]]\nname = \"review-eu\"\npins = \"eu/*.toml\"\n", `"review-eu" and [[environment_set]][0] "review" make ambiguous environment names`},
		{"duplicate", "[[environment_set]]\nname = \"review\"\npins = \"r/*.toml\"\n[[environment_set]]\nname = \"review\"\npins = \"eu/*.toml\"\n", `[[environment_set]][1].name: "review" is already the name of [[environment_set]][0]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("x.toml", []byte(setRepo+tt.doc))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v\nwant it to contain %q", err, tt.want)
			}
		})
	}
}

func TestEnvironmentSetTTLAndNotifyTeardown(t *testing.T) {
	cfg, err := Parse("x.toml", []byte(setRepo+`
[[notify]]
kind = "webhook"
url_file = "/u"
events = ["teardown"]
[[environment_set]]
name = "review"
pins = "review/pr-*.toml"
ttl = "72h"
`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.EnvironmentSets[0].TTL != 72*time.Hour || cfg.EnvironmentSets[0].Spec().Windows != nil || string(cfg.Notify[0].Events[0]) != "teardown" {
		t.Fatalf("%+v %+v", cfg.EnvironmentSets[0], cfg.Notify[0])
	}
}

func TestEnvironmentSetWindows(t *testing.T) {
	cfg, err := Parse("x.toml", []byte(setRepo+`
[[environment_set]]
name = "review"
pins = "review/*.toml"
windows = ["Mon-Fri 09:00-16:00 Europe/Berlin"]
`))
	if err != nil {
		t.Fatal(err)
	}
	ws := cfg.EnvironmentSets[0].Spec().Windows
	if len(ws) != 1 || ws[0].String() != "Mon-Fri 09:00-16:00 Europe/Berlin" {
		t.Fatalf("windows: %v", ws)
	}
}
