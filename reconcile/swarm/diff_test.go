package swarm

import "testing"

func TestImageDiff(t *testing.T) {
	d1, d2 := "@sha256:"+sha("1"), "@sha256:"+sha("2")
	tests := []struct{ want, got, reason string }{
		{"nginx", "docker.io/library/nginx:latest" + d1, ""},
		{"nginx:1.27", "nginx:1.27" + d2, ""},
		{reg + "/web:v1", reg + "/web:v1" + d1, ""},
		{reg + "/web:v2", reg + "/web:v1" + d1, "image 10.237.0.1:5000/web:v1 -> :v2"},
		{reg + "/api:v1", reg + "/web:v1" + d1, "image 10.237.0.1:5000/web:v1 -> 10.237.0.1:5000/api:v1"},
		{"web:v1" + d2, "web:v1" + d2, ""},
		{"web:v1" + d2, "web:v1" + d1, "image web:v1" + d1 + " -> web:v1" + d2},
		{"web:v1", "", "image none -> web:v1"},
	}
	for _, tt := range tests {
		if got := imageDiff(tt.want, tt.got); got != tt.reason {
			t.Errorf("imageDiff(%q, %q) = %q, want %q", tt.want, tt.got, got, tt.reason)
		}
	}
}

// TestApplyImagePinnedInTheComposeFile: a digest the compose file names
// is sent as it is, never resolved, and a new one is an update.
func TestApplyImagePinnedInTheComposeFile(t *testing.T) {
	f, _ := newSwarm()
	r := v1()
	r.webImage = reg + "/web:v1@sha256:" + sha("a")
	deploy(t, f, r.stack())
	r.webImage = reg + "/web:v1@sha256:" + sha("b")
	f.resetCalls()
	st := r.stack()
	plan, _ := deploy(t, f, st)
	equalLines(t, "plan", actionLines(plan.Actions), []string{"update lst_web: [image " + reg + "/web:v1@sha256:" + sha("a") + " -> " + r.webImage + "]"})
	equalLines(t, "calls", f.calls, []string{"update-service lst_web"})
	if got := imageOf(f.service(t, "lst_web").Spec); got != r.webImage {
		t.Errorf("web runs %s, want %s", got, r.webImage)
	}
	if p := BuildPlan(st, observe(t, f, st)); !p.Empty() {
		t.Errorf("plan after: %v", actionLines(p.Actions))
	}
}
