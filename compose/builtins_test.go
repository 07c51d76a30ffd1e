package compose

import (
	"slices"
	"testing"
)

// TestSetBuiltins: a review environment's set, slug and URL are built-ins
// like LOCKSTEP_ENVIRONMENT (winning over every file); a fixed
// environment's slug is its name and its set and URL are empty.
func TestSetBuiltins(t *testing.T) {
	dir := writeRelease(t, map[string]string{
		"compose.yaml": `services:
  app:
    image: app:1
    labels:
      traefik.http.routers.app.rule: Host(` + "`${LOCKSTEP_SLUG}.review.example.com`" + `)
    environment:
      SET: ${LOCKSTEP_SET}
      SLUG: ${LOCKSTEP_SLUG}
      URL: ${LOCKSTEP_URL}
`,
		".env": "LOCKSTEP_SLUG=dotenv\n",
	})
	opts := testOptions(dir)
	opts.Environment, opts.Set, opts.Slug, opts.URL = "review-pr-142", "review", "pr-142", "https://pr-142.review.example.com"
	opts.PinVars = map[string]string{"LOCKSTEP_URL": "pin"}
	p := load(t, opts)
	want := []string{"SET=review", "SLUG=pr-142", "URL=https://pr-142.review.example.com"}
	if got := p.Services[0].Config.Env; !slices.Equal(got, want) {
		t.Errorf("Env = %q, want %q", got, want)
	}
	if rule := p.Services[0].Config.Labels["traefik.http.routers.app.rule"]; rule != "Host(`pr-142.review.example.com`)" {
		t.Errorf("host rule %q", rule)
	}

	fixed := load(t, testOptions(dir))
	want = []string{"SET=", "SLUG=" + testOptions(dir).Environment, "URL="}
	if got := fixed.Services[0].Config.Env; !slices.Equal(got, want) {
		t.Errorf("fixed environment: Env = %q, want %q", got, want)
	}
}
