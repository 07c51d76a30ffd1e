package e2e

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"text/tabwriter"
	"time"
)

// check fails the stack's subtest on everything not documented as
// expected, and logs the rest.
func (r *parityResult) check(t *testing.T) {
	t.Helper()
	for _, s := range r.stack.source {
		t.Logf("source: %s", s)
	}
	for _, s := range r.stack.rewrites {
		t.Logf("rewrite: %s", s)
	}
	if r.refused != "" {
		want, ok := parityRefusals[r.stack.name]
		switch {
		case !ok:
			t.Errorf("lockstep refused the stack, and no refusal is documented for it: %s\n%s", r.refused, r.output)
		case !strings.Contains(r.refused, want.says):
			t.Errorf("lockstep refused the stack, but not with the documented %q (%s): %s", want.says, want.reason, r.refused)
		default:
			t.Logf("refused as documented (%s): %s", want.reason, r.refused)
		}
		return
	}
	for _, e := range r.errs {
		t.Error(e)
	}
	if len(r.releaseExtra) > 0 {
		t.Errorf("the release dir changed under lockstep's containers: %s appeared, neither in the commit nor recorded by lockstep as a mount point of the release (the engine creates the mount point of a volume nested in a release bind there)", strings.Join(r.releaseExtra, ", "))
	}
	for _, d := range r.diffs {
		if d.Reason == "" {
			t.Errorf("differs: %s", d)
		} else {
			t.Logf("differs: %s", d)
		}
	}
	if len(r.takeoverA) > 0 {
		t.Errorf("takeover (a): `docker compose up -d` in the release dir recreated %d of %d containers lockstep created: %s",
			len(r.takeoverA), r.services, strings.Join(r.takeoverA, ", "))
	}
	for _, svc := range r.takeoverB {
		if why, ok := r.expectedB[svc]; ok {
			t.Logf("takeover (b): lockstep recreated %s, as expected: %s", svc, why)
		} else {
			t.Errorf("takeover (b): lockstep's first pass recreated %s, which Compose deployed from the same files", svc)
		}
	}
	for _, name := range paritySortedKeys(r.expectedB) {
		if r.checkB && !slices.Contains(r.takeoverB, name) {
			t.Errorf("takeover (b): lockstep kept %s, which %s: a running container must never see a file change under it, so it must move into the release", name, strings.TrimSuffix(r.expectedB[name], "; lockstep binds it from the immutable release"))
		}
	}
	if unexpectedB := len(r.takeoverB) - countExpected(r); unexpectedB > 0 {
		t.Logf("takeover (b) plan: %s", strings.Join(r.whyB, " | "))
	}
	if len(r.replan) > 0 {
		t.Errorf("after takeover (b), lockstep's plan still wants: %s", strings.Join(r.replan, "; "))
	}
	if len(r.warnings) > 0 {
		t.Errorf("after takeover (b), lockstep's plan warns: %s", strings.Join(r.warnings, "; "))
	}
}

func (r *parityResult) unexpected() (n, expected int) {
	for _, d := range r.diffs {
		if d.Reason == "" {
			n++
		} else {
			expected++
		}
	}
	return n, expected
}

// logParitySummary prints one line per stack and the totals the issue
// asks for: stacks accepted, identical, recreated on takeover both ways.
func logParitySummary(t *testing.T, version string, results []*parityResult, elapsed time.Duration) {
	sort.Slice(results, func(i, j int) bool { return results[i].stack.name < results[j].stack.name })
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 2, 8, 2, ' ', 0)
	fmt.Fprintln(w, "stack\tcontainers\tlockstep\tdiffs (unexpected/documented)\t(a) compose recreated\t(b) lockstep recreated (expected)\treplan\twarnings\terrors\ttime")
	var accepted, identical, svcs, recA, recB, expB, unexpB, keptBind, replan, warns, failed int
	for _, r := range results {
		if r.refused != "" {
			fmt.Fprintf(w, "%s\t-\trefused\t-\t-\t-\t-\t-\t-\t%s\n", r.stack.name, r.elapsed.Round(time.Second))
			continue
		}
		accepted++
		svcs += r.services
		u, e := r.unexpected()
		if u == 0 && r.checkA {
			identical++
		}
		nExp := 0
		for _, s := range r.takeoverB {
			if _, ok := r.expectedB[s]; ok {
				nExp++
			} else {
				unexpB++
			}
		}
		for name := range r.expectedB {
			if r.checkB && !slices.Contains(r.takeoverB, name) {
				keptBind++
			}
		}
		recA += len(r.takeoverA)
		recB += len(r.takeoverB)
		expB += nExp
		replan += len(r.replan)
		warns += len(r.warnings)
		if len(r.errs) > 0 {
			failed++
		}
		fmt.Fprintf(w, "%s\t%d\taccepted\t%d/%d\t%s\t%s\t%d\t%d\t%d\t%s\n", r.stack.name, r.services, u, e,
			count(r.checkA, len(r.takeoverA), r.services), count(r.checkB, len(r.takeoverB), r.services)+fmt.Sprintf(" (%d)", nExp),
			len(r.replan), len(r.warnings), len(r.errs), r.elapsed.Round(time.Second))
	}
	w.Flush()
	t.Logf("Docker Compose v%s (oracle wanted: v%s) against lockstep, %d stacks in %s\n%s", version, composeVersionWanted,
		len(results), elapsed.Round(time.Second), b.String())
	t.Logf("totals: accepted %d/%d; identical (no undocumented difference) %d/%d; "+
		"takeover (a) compose recreated %d/%d containers; takeover (b) lockstep recreated %d/%d (%d expected, %d not; %d binding the project dir kept); "+
		"replan actions after (b) %d; plan warnings after (b) %d; stacks with errors %d",
		accepted, len(results), identical, accepted, recA, svcs, recB, svcs, expB, unexpB, keptBind, replan, warns, failed)
}

func count(ran bool, n, of int) string {
	if !ran {
		return "n/a"
	}
	return fmt.Sprintf("%d/%d", n, of)
}

func countExpected(r *parityResult) int {
	n := 0
	for _, s := range r.takeoverB {
		if _, ok := r.expectedB[s]; ok {
			n++
		}
	}
	return n
}

func paritySortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
