package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lockstep-gitops/lockstep/e2e/harness"
	"github.com/moby/moby/client"
)

// TestComposeParity is issue 11 §4: Docker Compose itself is the oracle.
// Every stack of the corpus (e2e/testdata/parity, real public stacks with
// their provenance) is deployed by the real Docker Compose CLI and by
// lockstep's real pass, under the same project name, and the containers,
// networks and volumes each creates are compared field by field from
// `docker inspect`. Then both directions of takeover are counted:
//
//	(a) `docker compose up -d` run in lockstep's release dir on the project
//	    lockstep deployed: containers Compose recreates (expected 0);
//	(b) lockstep's first pass on the project Compose deployed from a host
//	    project dir: containers lockstep recreates (expected: only those that
//	    bind a file from the project dir, which moves into the release), and
//	    what its next plan still wants to change (expected nothing).
//
// It prints a summary table, and fails on any difference or recreate not
// documented in parity_expect_test.go with its reason.
func TestComposeParity(t *testing.T) {
	cli := harness.RequireDocker(t)
	version := requireComposeCLI(t)
	start := time.Now()
	stacks := loadParityCorpus(t)
	reg := harness.StartRegistry(t)
	// The images are shared by all stacks and removed once at the end;
	// CleanupProject is the harness's way to untag them, its project label
	// matching nothing.
	harness.CleanupProject(t, cli, harness.UniqueProject(t, "parity-images"), reg)
	for _, img := range parityImages(stacks) {
		repo, tag, _ := strings.Cut(img, ":")
		harness.PushTestApp(t, reg, repo, tag, harness.ImageOptions{Env: []string{"VERSION=parity"}})
	}

	var mu sync.Mutex
	var results []*parityResult
	t.Run("stacks", func(t *testing.T) {
		for _, st := range stacks {
			t.Run(st.name, func(t *testing.T) {
				t.Parallel()
				r := runParityStack(t, cli, reg, st)
				mu.Lock()
				results = append(results, r)
				mu.Unlock()
				r.check(t)
			})
		}
	})
	logParitySummary(t, version, results, time.Since(start))
}

// parityResult is what the suite measured on one stack.
type parityResult struct {
	stack            parityStack
	refused          string // lockstep's refusal, when it refused the stack
	output           string // the whole output of that apply
	errs             []string
	services         int
	diffs            []parityDiff
	takeoverA        []string // services Compose recreated on lockstep's project
	takeoverB        []string // services lockstep recreated on Compose's project
	expectedB        map[string]string
	whyB             []string // the plan of takeover (b): action, service, reasons
	releaseExtra     []string // what appeared in the release dir that the commit does not hold
	replan           []string // what lockstep's plan still wants after takeover (b)
	warnings         []string // the warnings of that plan
	elapsed          time.Duration
	composeA, checkA bool // takeover (a) ran
	checkB           bool // takeover (b) ran
}

func (r *parityResult) fail(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// runParityStack deploys one stack both ways. Failures are recorded in the
// result, so one stack that breaks does not hide what the others show.
func runParityStack(t *testing.T, cli *client.Client, reg string, st parityStack) *parityResult {
	r := &parityResult{stack: st, expectedB: map[string]string{}}
	start := time.Now()
	defer func() { r.elapsed = time.Since(start) }()
	f := &fixture{t: t, registry: reg, images: map[string]string{}}
	f.project = harness.UniqueProject(t, "par-"+st.name)
	harness.CleanupProject(t, cli, f.project, "")
	// A short bake: the suite compares configuration, the gate is tested
	// elsewhere; every corpus service keeps running or exits 0 for a
	// dependent that waits for it.
	f.agentExtra = "[health]\ntimeout = \"90s\"\nbake = \"1s\"\n"
	f.setupGitAndConfig()
	files := map[string]string{}
	for p, c := range st.files {
		files[p] = c
	}
	files[".env"] = stackEnv(t, st, reg, f.project, t.TempDir())

	lock, ok := r.lockstepFirst(t, cli, f, files)
	if !ok {
		return r
	}
	r.composeFirst(t, cli, f, files, lock)
	return r
}

// lockstepFirst is phase 1: lockstep deploys the stack on an empty host,
// then `docker compose up -d` in the release dir takes over (a). It leaves
// the host empty again and returns lockstep's deploy.
func (r *parityResult) lockstepFirst(t *testing.T, cli *client.Client, f *fixture, files map[string]string) (paritySnapshot, bool) {
	st := r.stack
	sha := f.release("parity stack "+st.name, files)
	res := f.lockstep("apply", "e2e")
	if res.code != 0 {
		r.refused, r.output = refusal(res.stdout+"\n"+res.stderr), res.String()
		return paritySnapshot{}, false
	}
	release := filepath.Join(f.stateDir, "releases", sha)
	lock, err := takeParitySnapshot(cli, f.project, release)
	if err != nil {
		r.fail("inspect lockstep's deploy: %v", err)
		return lock, false
	}
	r.services = len(lock.ids)
	r.releaseExtra = releaseExtras(release, files, releaseMountPoints(f.stateDir, sha))
	if _, err := runCompose(release, f.project, "up", "-d"); err != nil {
		r.fail("takeover (a): %v", err)
	} else if after, err := takeParitySnapshot(cli, f.project, release); err != nil {
		r.fail("inspect after takeover (a): %v", err)
	} else {
		r.takeoverA, r.checkA = changedIDs(lock.ids, after.ids), true
	}
	if out, err := runCompose(release, f.project, "down", "-v", "--remove-orphans"); err != nil {
		r.fail("compose down of lockstep's project: %v\n%s", err, out)
	}
	removeParityProject(t, cli, f.project)
	return lock, true
}

// composeFirst is phase 2: Compose deploys the stack from a host project
// dir, its deploy is compared with lockstep's, then lockstep's first pass
// (a fresh state dir: a host lockstep never ran on) takes over (b).
func (r *parityResult) composeFirst(t *testing.T, cli *client.Client, f *fixture, files map[string]string, lock paritySnapshot) {
	st := r.stack
	host := filepath.Join(t.TempDir(), st.name)
	writeStack(t, host, files)
	if _, err := runCompose(host, f.project, "up", "-d"); err != nil {
		r.fail("compose up: %v", err)
		return
	}
	comp, err := takeParitySnapshot(cli, f.project, host)
	if err != nil {
		r.fail("inspect Compose's deploy: %v", err)
		return
	}
	subnets, err := composeSubnets(host, f.project)
	if err != nil {
		r.fail("%v", err)
	}
	r.diffs = compareParity(st, comp, lock, subnets)
	for svc, sources := range comp.mounts {
		for _, s := range sources {
			if within(host, s) {
				r.expectedB[svc] = fmt.Sprintf(releaseBind, strings.TrimPrefix(s, host+"/"))
			}
		}
	}
	f.stateDir = t.TempDir()
	f.writeConfig("")
	// The plan of the takeover says why each container would be
	// recreated; the report names it for every unexpected one.
	before, _ := changes(f.plan())
	for _, a := range before {
		r.whyB = append(r.whyB, fmt.Sprintf("%s %s: %s", a.Kind, a.Service, strings.Join(a.Reasons, "; ")))
	}
	if res := f.lockstep("apply", "e2e"); res.code != 0 {
		r.fail("takeover (b): lockstep apply on Compose's project: %s", res)
		return
	}
	after, err := takeParitySnapshot(cli, f.project, host)
	if err != nil {
		r.fail("inspect after takeover (b): %v", err)
		return
	}
	r.takeoverB, r.checkB = changedIDs(comp.ids, after.ids), true
	p := f.plan()
	acts, _ := changes(p)
	for _, a := range acts {
		r.replan = append(r.replan, fmt.Sprintf("%s %s (%s)", a.Kind, a.Service, strings.Join(a.Reasons, "; ")))
	}
	r.warnings = p.Warnings
}

// compareParity diffs the two deploys and explains the expected
// differences.
func compareParity(st parityStack, comp, lock paritySnapshot, subnets map[string]bool) []parityDiff {
	var diffs []parityDiff
	diffs = append(diffs, diffObjects("container", comp.containers, lock.containers, containerIgnored)...)
	for name := range keysOf2(comp.networks, lock.networks) {
		auto := !subnets[name]
		diffs = append(diffs, diffObjects("network", pick(comp.networks, name), pick(lock.networks, name),
			func(p string) string { return networkIgnored(p, auto) })...)
	}
	diffs = append(diffs, diffObjects("volume", comp.volumes, lock.volumes, volumeIgnored)...)
	explain(st.name, diffs)
	return diffs
}

func keysOf2(a, b map[string]inspectFlat) map[string]bool {
	out := map[string]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}

// pick is the one-object map diffObjects compares, empty when absent.
func pick(m map[string]inspectFlat, name string) map[string]inspectFlat {
	if f, ok := m[name]; ok {
		return map[string]inspectFlat{name: f}
	}
	return map[string]inspectFlat{}
}

// changedIDs lists the containers (by name) that are not the same ones.
func changedIDs(before, after map[string]string) []string {
	var out []string
	for _, svc := range paritySorted(keysOf(before, after)) {
		if before[svc] != after[svc] {
			out = append(out, svc)
		}
	}
	return out
}

func keysOf(ms ...map[string]string) map[string]bool {
	out := map[string]bool{}
	for _, m := range ms {
		for k := range m {
			out[k] = true
		}
	}
	return out
}

func within(dir, p string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// refusal picks the error lines of a failed apply ("lockstep: ..."),
// leaving out the JSON log lines and the plan; without one it keeps the
// last three lines.
func refusal(out string) string {
	var errs, rest []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, "lockstep:") || strings.HasPrefix(l, "error") || strings.Contains(l, "failed"):
			errs = append(errs, l)
		case l != "" && !strings.HasPrefix(l, "{"):
			rest = append(rest, l)
		}
	}
	if len(errs) == 0 && len(rest) > 3 {
		errs = rest[len(rest)-3:]
	} else if len(errs) == 0 {
		errs = rest
	}
	return strings.Join(errs, " | ")
}

// releaseExtras lists the paths of the release dir that are neither a
// file of the commit, a directory holding one, nor a mount point lockstep
// made part of the release: what the engine created there (the mount
// point of an anonymous volume nested in a release bind, issue 11 §3). A
// release must stay as lockstep wrote it.
func releaseExtras(release string, files map[string]string, mountPoints map[string]bool) []string {
	want := map[string]bool{}
	for p := range mountPoints {
		for d := p; d != "." && d != "/"; d = filepath.Dir(d) {
			want[d] = true
		}
	}
	for p := range files {
		for d := p; d != "." && d != "/"; d = filepath.Dir(d) {
			want[filepath.ToSlash(d)] = true
		}
	}
	var extra []string
	_ = filepath.WalkDir(release, func(p string, d fs.DirEntry, err error) error {
		rel, _ := filepath.Rel(release, p)
		rel = filepath.ToSlash(rel)
		if err != nil || rel == "." {
			return nil
		}
		if !want[rel] && !strings.HasPrefix(rel, "environments/") && rel != "environments" {
			extra = append(extra, rel)
		}
		return nil
	})
	return extra
}

// releaseMountPoints reads the mount points lockstep records as part of
// the release in the release's manifest (<sha>.json under the state dir,
// entries marked mount_point), where lockstep has one; none otherwise.
func releaseMountPoints(stateDir, sha string) map[string]bool {
	out := map[string]bool{}
	_ = filepath.WalkDir(stateDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != sha+".json" {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		var m struct {
			Entries []struct {
				Path       string `json:"path"`
				MountPoint bool   `json:"mount_point"`
			} `json:"entries"`
		}
		if json.Unmarshal(b, &m) == nil {
			for _, e := range m.Entries {
				if e.MountPoint {
					out[filepath.ToSlash(filepath.Clean(e.Path))] = true
				}
			}
		}
		return nil
	})
	return out
}

// removeParityProject removes what the first phase left (compose down
// should have removed it all), so the second phase starts on an empty host.
func removeParityProject(t *testing.T, cli *client.Client, project string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	left, err := harness.ProjectLeftovers(ctx, cli, project)
	if err != nil || len(left) == 0 {
		return
	}
	t.Logf("compose down -v left %s; removing it", strings.Join(left, ", "))
	filter := client.Filters{}.Add("label", harness.LabelProject+"="+project)
	ctrs, _ := cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: filter})
	for _, c := range ctrs.Items {
		_, _ = cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
	}
	nets, _ := cli.NetworkList(ctx, client.NetworkListOptions{Filters: filter})
	for _, n := range nets.Items {
		_, _ = cli.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{})
	}
	vols, _ := cli.VolumeList(ctx, client.VolumeListOptions{Filters: filter})
	for _, v := range vols.Items {
		_, _ = cli.VolumeRemove(ctx, v.Name, client.VolumeRemoveOptions{})
	}
}
