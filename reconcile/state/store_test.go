package state

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/reconcile"
	"github.com/lockstep-gitops/lockstep/reconcile/internal/fake"
)

// The old reconcile helpers, as the store does them now.
func loadDeployed(dir, env, project string) (*reconcile.Deployed, error) {
	return New(dir, 0, zerolog.Nop()).Deployed(env, project)
}

func saveDeployed(dir, env string, d *reconcile.Deployed) error {
	return New(dir, 0, zerolog.Nop()).SaveDeployed(env, d)
}

func deployedPath(dir, env string) string { return filepath.Join(dir, path(env, "deployed.json")) }

var deployedOf = reconcile.DeployedOf

func TestDeployedRecordRoundTrip(t *testing.T) {
	dir := t.TempDir()
	if d, err := loadDeployed(dir, "prod", "prod"); d != nil || err != nil {
		t.Fatalf("no record yet: got %+v, %v", d, err)
	}
	want := deployedOf(fake.Project(), time.Unix(1700000000, 0))
	if err := saveDeployed(dir, "prod", want); err != nil {
		t.Fatal(err)
	}
	got, err := loadDeployed(dir, "prod", "prod")
	if err != nil || !got.Same(want) || !got.At.Equal(want.At) {
		t.Fatalf("round trip: got %+v, %v; want %+v", got, err, want)
	}
	if d, _ := loadDeployed(dir, "prod", "other-project"); d != nil {
		t.Fatalf("a record of another project must not be used: %+v", d)
	}
	entries, _ := os.ReadDir(filepath.Dir(deployedPath(dir, "prod")))
	if len(entries) != 1 {
		t.Fatalf("temp files left beside the record: %v", entries)
	}
}

// stores are the two kinds of Store every behaviour must hold for: one on
// disk and one in memory.
func stores(t *testing.T, historySize int, log zerolog.Logger) []struct {
	name string
	s    *Store
} {
	t.Helper()
	return []struct {
		name string
		s    *Store
	}{
		{"disk", New(t.TempDir(), historySize, log)},
		{"memory", New("", historySize, log)},
	}
}

func TestStoreAtomicReplace(t *testing.T) {
	tests := []struct {
		name   string
		before string // "" = no file yet
		data   string
	}{
		{"new file, directories made", "", `{"a":1}`},
		{"replaces a longer file whole", strings.Repeat("x", 4096), `{"a":2}`},
		{"replaces a shorter file", "{}", strings.Repeat("y", 4096)},
		{"empty content", "old", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "environments", "prod", "deployed.json")
			var old *os.File
			if tt.before != "" {
				if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(tt.before), 0o640); err != nil {
					t.Fatal(err)
				}
				var err error
				if old, err = os.Open(p); err != nil {
					t.Fatal(err)
				}
				defer old.Close()
			}
			if err := WriteFileAtomic(p, []byte(tt.data)); err != nil {
				t.Fatal(err)
			}
			if b, err := os.ReadFile(p); err != nil || string(b) != tt.data {
				t.Fatalf("after the replace: %q, %v; want %q", b, err, tt.data)
			}
			if old != nil {
				// A rename, not a rewrite in place: a reader that opened the
				// old file still reads it whole.
				if b, err := readAll(old); err != nil || string(b) != tt.before {
					t.Fatalf("the old file was changed in place: %q, %v", b, err)
				}
			}
			entries, _ := os.ReadDir(filepath.Dir(p))
			if len(entries) != 1 || entries[0].Name() != "deployed.json" {
				t.Fatalf("temp files left beside the record: %v", entries)
			}
		})
	}
}

func readAll(f *os.File) ([]byte, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return io.ReadAll(f)
}

func TestStoreInMemoryWritesNothing(t *testing.T) {
	cwd := t.TempDir()
	t.Chdir(cwd)
	s := New("", 0, zerolog.Nop())
	if s.Dir() != "" {
		t.Fatalf("Dir of a store in memory: %q", s.Dir())
	}
	d := reconcile.DeployedOf(fake.Project(), time.Unix(1700000000, 0))
	steps := []struct {
		name string
		do   func() error
	}{
		{"SaveDeployed", func() error { return s.SaveDeployed("prod", d) }},
		{"PushHealthy", func() error { return s.PushHealthy("prod", HealthyRevision{Commit: fake.CommitA}) }},
		{"Hold", func() error { return s.Hold("prod", Quarantine{Commit: fake.CommitB, Reason: "r"}) }},
		{"AppendHistory", func() error { return s.AppendHistory("prod", reconcile.PassRecord{ID: "p1"}) }},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
	}
	if got, err := s.Deployed("prod", "prod"); err != nil || !got.Same(d) {
		t.Errorf("Deployed: %+v, %v", got, err)
	}
	if h, err := s.Healthy("prod"); err != nil || len(h) != 1 || h[0].Commit != fake.CommitA {
		t.Errorf("Healthy: %+v, %v", h, err)
	}
	if q, err := s.Quarantine("prod"); err != nil || !slices.Equal(Commits(q), []string{fake.CommitB}) {
		t.Errorf("Quarantine: %+v, %v", q, err)
	}
	if h, err := s.History("prod", 0); err != nil || len(h) != 1 || h[0].ID != "p1" {
		t.Errorf("History: %+v, %v", h, err)
	}
	if other, _ := s.Healthy("stage"); len(other) != 0 {
		t.Errorf("another environment sees prod's records: %+v", other)
	}
	if entries, _ := os.ReadDir(cwd); len(entries) != 0 {
		t.Fatalf("a store in memory wrote files: %v", entries)
	}
}

func TestStoreHistoryIsBoundedNewestLast(t *testing.T) {
	tests := []struct {
		size, appended, limit int
		want                  []string // IDs
	}{
		{size: 3, appended: 2, limit: 0, want: []string{"p0", "p1"}},
		{size: 3, appended: 5, limit: 0, want: []string{"p2", "p3", "p4"}},
		{size: 3, appended: 5, limit: 2, want: []string{"p3", "p4"}},
		{size: 3, appended: 5, limit: 10, want: []string{"p2", "p3", "p4"}},
		{size: 0, appended: DefaultHistorySize + 1, limit: 1, want: []string{fmt.Sprintf("p%d", DefaultHistorySize)}},
	}
	for _, tt := range tests {
		for _, st := range stores(t, tt.size, zerolog.Nop()) {
			t.Run(fmt.Sprintf("%s/size=%d,appended=%d,limit=%d", st.name, tt.size, tt.appended, tt.limit), func(t *testing.T) {
				for i := range tt.appended {
					if err := st.s.AppendHistory("prod", reconcile.PassRecord{ID: fmt.Sprintf("p%d", i)}); err != nil {
						t.Fatal(err)
					}
				}
				h, err := st.s.History("prod", tt.limit)
				if err != nil {
					t.Fatal(err)
				}
				var ids []string
				for _, r := range h {
					ids = append(ids, r.ID)
				}
				if !slices.Equal(ids, tt.want) {
					t.Fatalf("history %q, want %q", ids, tt.want)
				}
				if st.s.Dir() == "" {
					return
				}
				var onDisk []reconcile.PassRecord
				b, err := os.ReadFile(filepath.Join(st.s.Dir(), "environments", "prod", "history.json"))
				size := tt.size
				if size == 0 {
					size = DefaultHistorySize
				}
				if err != nil || json.Unmarshal(b, &onDisk) != nil || len(onDisk) != min(tt.appended, size) {
					t.Fatalf("history on disk: %d records, %v; want %d", len(onDisk), err, min(tt.appended, size))
				}
			})
		}
	}
}

func TestStoreCorruptHistoryIsMovedAsideAndLogged(t *testing.T) {
	tests := []struct {
		name    string
		content string
	}{
		{"torn write", `[{"id": "torn`},
		{"not a list", `{"id": "p1"}`},
		{"garbage", "\x00\x01\x02"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs fake.SyncBuffer
			dir := t.TempDir()
			s := New(dir, 0, zerolog.New(&logs))
			p := filepath.Join(dir, "environments", "prod", "history.json")
			if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(tt.content), 0o640); err != nil {
				t.Fatal(err)
			}
			h, err := s.History("prod", 0)
			if err != nil || len(h) != 0 {
				t.Fatalf("a corrupt history must read as empty, not fail: %v, %v", h, err)
			}
			aside, _ := filepath.Glob(p + ".corrupt-*")
			if len(aside) != 1 {
				t.Fatalf("corrupt history not moved aside: %v", aside)
			}
			if b, _ := os.ReadFile(aside[0]); string(b) != tt.content {
				t.Fatalf("moved-aside file changed: %q", b)
			}
			var line map[string]any
			if err := json.Unmarshal([]byte(strings.TrimSpace(logs.String())), &line); err != nil {
				t.Fatalf("want one log line, got %q: %v", logs.String(), err)
			}
			if line["level"] != "error" || line["env"] != "prod" || line["file"] != p || line["moved_to"] != aside[0] ||
				!strings.Contains(line["message"].(string), "pass history unreadable") {
				t.Fatalf("log line: %v", line)
			}
			// The next pass starts a new history beside the old one.
			if err := s.AppendHistory("prod", reconcile.PassRecord{ID: "p1"}); err != nil {
				t.Fatal(err)
			}
			if h, _ := s.History("prod", 0); len(h) != 1 || h[0].ID != "p1" {
				t.Fatalf("history after starting over: %v", h)
			}
			if b, _ := os.ReadFile(aside[0]); string(b) != tt.content {
				t.Fatalf("the moved-aside file was overwritten: %q", b)
			}
		})
	}
}

func TestStoreHoldAndClearQuarantine(t *testing.T) {
	const commitC = "c0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ff"
	at := time.Unix(1700000000, 0).UTC()
	tests := []struct {
		name        string
		hold        []Quarantine
		want        []string // Commits, newest first
		wantReason  string   // of the newest
		clear       bool
		wantCleared []string
	}{
		{name: "none", want: nil},
		{name: "one", hold: []Quarantine{{Commit: fake.CommitA, Reason: "gate"}}, want: []string{fake.CommitA}, wantReason: "gate"},
		{name: "newest first", hold: []Quarantine{{Commit: fake.CommitA, Reason: "a"}, {Commit: fake.CommitB, Reason: "b"}},
			want: []string{fake.CommitB, fake.CommitA}, wantReason: "b"},
		{name: "holding a commit again replaces its entry", hold: []Quarantine{
			{Commit: fake.CommitA, Reason: "first"}, {Commit: fake.CommitB, Reason: "b"}, {Commit: fake.CommitA, Reason: "again", Manual: true},
		}, want: []string{fake.CommitA, fake.CommitB}, wantReason: "again"},
		{name: "clear releases all", hold: []Quarantine{{Commit: fake.CommitA}, {Commit: commitC}}, clear: true,
			want: nil, wantCleared: []string{commitC, fake.CommitA}},
		{name: "clear with none held", clear: true, want: nil, wantCleared: nil},
	}
	for _, tt := range tests {
		for _, st := range stores(t, 0, zerolog.Nop()) {
			t.Run(st.name+"/"+tt.name, func(t *testing.T) {
				for _, q := range tt.hold {
					q.At = at
					if err := st.s.Hold("prod", q); err != nil {
						t.Fatal(err)
					}
				}
				if tt.clear {
					released, err := st.s.ClearQuarantine("prod")
					if err != nil || !slices.Equal(Commits(released), tt.wantCleared) {
						t.Fatalf("ClearQuarantine: %q, %v; want %q", Commits(released), err, tt.wantCleared)
					}
				}
				q, err := st.s.Quarantine("prod")
				if err != nil || !slices.Equal(Commits(q), tt.want) {
					t.Fatalf("Quarantine: %q, %v; want %q", Commits(q), err, tt.want)
				}
				if tt.wantReason != "" && (q[0].Reason != tt.wantReason || !q[0].At.Equal(at)) {
					t.Fatalf("newest entry: %+v, want reason %q", q[0], tt.wantReason)
				}
				if other, _ := st.s.Quarantine("stage"); len(other) != 0 {
					t.Fatalf("another environment's quarantine: %+v", other)
				}
				// A second store over the same dir sees the same records.
				if st.s.Dir() != "" {
					again, err := New(st.s.Dir(), 0, zerolog.Nop()).Quarantine("prod")
					if err != nil || !slices.Equal(Commits(again), tt.want) {
						t.Fatalf("read by another store: %q, %v", Commits(again), err)
					}
				}
			})
		}
	}
}

func TestStoreUnreadableQuarantineIsAnError(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "environments", "prod", "quarantine.json")
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("[{"), 0o640); err != nil {
		t.Fatal(err)
	}
	s := New(dir, 0, zerolog.Nop())
	if _, err := s.Quarantine("prod"); err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("an unreadable quarantine must fail, naming the file: %v", err)
	}
	if err := s.Hold("prod", Quarantine{Commit: fake.CommitA}); err == nil {
		t.Fatal("Hold over an unreadable quarantine must fail, not drop the held commits")
	}
}

func TestStorePushHealthyOrderAndBound(t *testing.T) {
	commit := func(i int) string { return fmt.Sprintf("%040d", i) }
	tests := []struct {
		name   string
		pushes []int // commits pushed, in order
		want   []int // Healthy, newest first
	}{
		{"one", []int{1}, []int{1}},
		{"newest first", []int{1, 2, 3}, []int{3, 2, 1}},
		{"pushing the newest again is a no-op", []int{1, 2, 2}, []int{2, 1}},
		{"an older one pushed again moves to the front", []int{1, 2, 3, 1}, []int{1, 3, 2}},
		{"bounded to HealthyKept", []int{1, 2, 3, 4, 5, 6, 7}, []int{7, 6, 5, 4, 3}},
		{"bounded, with a repeat", []int{1, 2, 3, 4, 5, 6, 2}, []int{2, 6, 5, 4, 3}},
	}
	for _, tt := range tests {
		for _, st := range stores(t, 0, zerolog.Nop()) {
			t.Run(st.name+"/"+tt.name, func(t *testing.T) {
				for i, c := range tt.pushes {
					hr := HealthyRevision{Commit: commit(c), ReleaseDir: "/releases/" + commit(c), At: time.Unix(int64(i), 0)}
					if err := st.s.PushHealthy("prod", hr); err != nil {
						t.Fatal(err)
					}
				}
				list, err := st.s.Healthy("prod")
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for _, hr := range list {
					got = append(got, hr.Commit)
				}
				var want []string
				for _, c := range tt.want {
					want = append(want, commit(c))
				}
				if !slices.Equal(got, want) {
					t.Fatalf("healthy %q, want %q", got, want)
				}
				if len(list) > HealthyKept {
					t.Fatalf("%d healthy revisions kept, want at most %d", len(list), HealthyKept)
				}
				// The rollback target when the newest is the one being left.
				if target, ok := RollbackTarget(list, got[0]); len(got) > 1 && (!ok || target.Commit != got[1]) {
					t.Fatalf("rollback target leaving %s: %+v %v, want %s", got[0], target, ok, got[1])
				}
			})
		}
	}
}

func TestStoreDeployedOfAnotherProjectIsNil(t *testing.T) {
	d := reconcile.DeployedOf(fake.Project(), time.Unix(1700000000, 0)) // project "prod"
	tests := []struct {
		name, env, project string
		want               bool
	}{
		{"same env and project", "production", "prod", true},
		{"another project (the environment was moved)", "production", "prod-v2", false},
		{"another environment", "staging", "prod", false},
		{"empty project", "production", "", false},
	}
	for _, tt := range tests {
		for _, st := range stores(t, 0, zerolog.Nop()) {
			t.Run(st.name+"/"+tt.name, func(t *testing.T) {
				if err := st.s.SaveDeployed("production", d); err != nil {
					t.Fatal(err)
				}
				got, err := st.s.Deployed(tt.env, tt.project)
				if err != nil {
					t.Fatal(err)
				}
				if tt.want != (got != nil) || (got != nil && !got.Same(d)) {
					t.Fatalf("Deployed(%s, %s): %+v, want found=%v", tt.env, tt.project, got, tt.want)
				}
			})
		}
	}
}

func TestStoreSaveDeployedSkipsAnEqualRecord(t *testing.T) {
	dir := t.TempDir()
	s := New(dir, 0, zerolog.Nop())
	d := reconcile.DeployedOf(fake.Project(), time.Unix(1700000000, 0))
	if err := s.SaveDeployed("prod", d); err != nil {
		t.Fatal(err)
	}
	p := deployedPath(dir, "prod")
	// Make a rewrite visible whatever the file system's time resolution.
	old := time.Unix(1600000000, 0)
	if err := os.Chtimes(p, old, old); err != nil {
		t.Fatal(err)
	}
	later := reconcile.DeployedOf(fake.Project(), time.Unix(1800000000, 0))
	if err := s.SaveDeployed("prod", later); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(p); !fi.ModTime().Equal(old) {
		t.Fatal("an equal deployment (ignoring when) was written again")
	}
}

func TestCheckEnvironment(t *testing.T) {
	tests := []struct {
		env string
		ok  bool
	}{
		{"prod", true}, {"pr-142", true}, {"a_b", true},
		{"", false}, {".", false}, {"..", false}, {"../etc", false}, {"a/b", false}, {`a\b`, false}, {"a\x00b", false},
	}
	for _, tt := range tests {
		if err := CheckEnvironment(tt.env); (err == nil) != tt.ok {
			t.Errorf("CheckEnvironment(%q): %v, want ok=%v", tt.env, err, tt.ok)
		}
	}
}

func TestAdoptedRecord(t *testing.T) {
	dir := t.TempDir()
	s := New(dir, 0, zerolog.Nop())
	file := filepath.Join(dir, "environments", "prod", "adopted.json")
	if err := s.SaveAdopted("prod", "app", []reconcile.Adopted{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(file); err == nil {
		t.Fatalf("an empty record was written for a project that never adopted")
	}
	at := time.Date(2026, 12, 2, 1, 0, 0, 0, time.UTC)
	list := []reconcile.Adopted{{ContainerID: "c1", Service: "db", Number: 1, Hash: "h", Commit: "abc", At: at}}
	if err := s.SaveAdopted("prod", "app", list); err != nil {
		t.Fatal(err)
	}
	got, err := s.Adopted("prod", "app")
	if err != nil || len(got) != 1 || got[0] != list[0] {
		t.Fatalf("read back %+v, %v", got, err)
	}
	if other, _ := s.Adopted("prod", "other"); other != nil {
		t.Fatalf("the record of another project was returned: %+v", other)
	}
	st, _ := os.Stat(file)
	later := []reconcile.Adopted{list[0]}
	later[0].At = at.Add(time.Hour)
	if err := s.SaveAdopted("prod", "app", later); err != nil {
		t.Fatal(err)
	}
	if st2, _ := os.Stat(file); !st.ModTime().Equal(st2.ModTime()) {
		t.Errorf("an unchanged record was written again")
	}
}
