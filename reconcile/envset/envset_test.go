package envset

import (
	"strings"
	"testing"
)

func TestSlugAndName(t *testing.T) {
	tests := []struct{ file, slug, name string }{
		{"environments/review/pr-142.toml", "pr-142", "review-pr-142"},
		{"environments/review/PR #142.toml", "pr-142", "review-pr-142"},
		{"r/Feature__Login--Page.toml", "feature__login-page", "review-feature__login-page"},
		{"r/-_x_-.toml", "x", "review-x"},
		{"r/ü.toml", "", ""},
		{"r/" + strings.Repeat("a", 100) + ".toml", strings.Repeat("a", 100), "review-" + strings.Repeat("a", MaxNameLen-len("review-"))},
		{"r/" + strings.Repeat("a", 55) + "-b.toml", strings.Repeat("a", 55) + "-b", "review-" + strings.Repeat("a", 55)},
	}
	for _, tt := range tests {
		if got := Slug(tt.file); got != tt.slug {
			t.Errorf("Slug(%q) = %q, want %q", tt.file, got, tt.slug)
		}
		got := Name("review", tt.file)
		if got != tt.name {
			t.Errorf("Name(%q) = %q, want %q", tt.file, got, tt.name)
		}
		if len(got) > MaxNameLen {
			t.Errorf("Name(%q) is %d long", tt.file, len(got))
		}
	}
}

func TestExpand(t *testing.T) {
	set := Set{Name: "review", Pins: "environments/review/*.toml", URL: "https://${LOCKSTEP_SLUG}.review.example.com/${LOCKSTEP_SET}"}
	files := []string{
		"environments/review/pr-2.toml",
		"environments/review/PR-1.toml",
		"environments/review/pr-1.toml", // clashes with PR-1.toml
		"environments/review/x.yaml",    // not the glob's
		"environments/review/sub/pr-3.toml",
		"environments/review/ops.toml", // review-ops is a fixed environment
		"environments/review/#.toml",   // no name
	}
	members, refused := Expand(set, files, Fixed("review-ops"))
	if len(members) != 1 || members[0].Name != "review-pr-2" || members[0].Slug != "pr-2" ||
		members[0].URL != "https://pr-2.review.example.com/review" || members[0].PinFile != "environments/review/pr-2.toml" {
		t.Fatalf("members: %+v", members)
	}
	var got []string
	for _, r := range refused {
		got = append(got, r.PinFile+": "+r.Reason)
	}
	want := []string{
		"environments/review/#.toml: not deployed: the name of environments/review/#.toml leaves nothing to name an environment by; use letters or digits",
		"environments/review/PR-1.toml: not deployed: environments/review/PR-1.toml, environments/review/pr-1.toml all make the environment name review-pr-1; rename all but one",
		"environments/review/ops.toml: not deployed: environments/review/ops.toml makes the environment name review-ops, which is a fixed [[environment]]'s; rename the pin file",
		"environments/review/pr-1.toml: not deployed: environments/review/PR-1.toml, environments/review/pr-1.toml all make the environment name review-pr-1; rename all but one",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("refused:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestCheckURL(t *testing.T) {
	if bad := CheckURL("https://${LOCKSTEP_SLUG}.x/${LOCKSTEP_ENVIRONMENT}/${LOCKSTEP_SET}"); len(bad) != 0 {
		t.Errorf("known variables refused: %v", bad)
	}
	if bad := CheckURL("https://${PR}.x/${LOCKSTEP_COMMIT}"); strings.Join(bad, ",") != "PR,LOCKSTEP_COMMIT" {
		t.Errorf("unknown variables: %v", bad)
	}
}
