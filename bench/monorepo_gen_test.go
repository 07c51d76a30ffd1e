package bench

// The synthetic monorepo of BenchmarkMonorepo (issue 14): the whole stack in
// one repository, one squashed commit per change, a big tree of code at the
// head and, at the root, a compose.yaml that uses a small part of it. It is
// written by one `git fast-import` stream into a fresh bare repository and
// kept per scale in a cache directory, so re-runs and -count do not
// regenerate it.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// monorepoGenVersion names the generator in the cache path: bump it when
// the content it writes changes, so an old cached repository is not reused.
const monorepoGenVersion = 2

// monorepoSpec is the shape of the repository at one scale. Scale 1.0 is
// the repository of issue 14: 100,000 commits, about 866 MB of history (the
// pack) and 200 MB of tree at the head.
type monorepoSpec struct {
	Scale     float64
	Commits   int // in total, the commits that grow the tree included
	Files     int // code files at the head
	FileBytes int // mean size of a code file
	Touch     int // files a change rewrites: Touch and Touch-1 in turn
	PerDir    int // code files per directory
	DirsPerSv int // directories per service
}

func newMonorepoSpec(scale float64) monorepoSpec {
	s := monorepoSpec{Scale: scale, FileBytes: 10_000, Touch: 3, PerDir: 20, DirsPerSv: 10}
	s.Commits = max(100, int(100_000*scale))
	s.Files = max(s.PerDir, int(20_000*scale))
	return s
}

// monorepoScale reads LOCKSTEP_MONOREPO_SCALE (default 0.1).
func monorepoScale(b *testing.B) float64 {
	v := os.Getenv("LOCKSTEP_MONOREPO_SCALE")
	if v == "" {
		return 0.1
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f <= 0 || f > 4 {
		b.Fatalf("LOCKSTEP_MONOREPO_SCALE=%q: want a number in (0, 4], 1.0 being the repository of issue 14", v)
	}
	return f
}

// monorepoCacheDir is where generated repositories are kept:
// $LOCKSTEP_BENCH_CACHE, else the user cache dir (~/.cache/lockstep-bench),
// else the temp dir.
func monorepoCacheDir() string {
	if d := os.Getenv("LOCKSTEP_BENCH_CACHE"); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "lockstep-bench")
	}
	return filepath.Join(os.TempDir(), "lockstep-bench")
}

// cachedMonorepo returns the bare repository for spec, generating it first
// when the cache has none. It is built aside and renamed into place, so an
// interrupted generation leaves nothing that looks complete.
func cachedMonorepo(b *testing.B, spec monorepoSpec) string {
	b.Helper()
	root := monorepoCacheDir()
	dir := filepath.Join(root, fmt.Sprintf("monorepo-v%d-scale%s.git", monorepoGenVersion, strconv.FormatFloat(spec.Scale, 'f', -1, 64)))
	if _, err := os.Stat(filepath.Join(dir, "lockstep-bench-complete")); err == nil {
		b.Logf("monorepo: using the cached repository %s", dir)
		return dir
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		b.Fatal(err)
	}
	tmp, err := os.MkdirTemp(root, "generating-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	start := time.Now()
	runIn(b, tmp, isolatedGit(), "git", "init", "-q", "--bare", "-b", "main", ".")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	if err := fastImport(ctx, tmp, func(w io.Writer) error { return writeMonorepo(w, spec) }); err != nil {
		b.Fatalf("generate the monorepo at scale %v: %v", spec.Scale, err)
	}
	writeFile(b, filepath.Join(tmp, "lockstep-bench-complete"), time.Now().UTC().Format(time.RFC3339)+"\n")
	if _, err := os.Stat(filepath.Join(dir, "lockstep-bench-complete")); err == nil {
		b.Logf("monorepo: another run generated %s meanwhile; using it", dir)
		return dir
	}
	_ = os.RemoveAll(dir) // an incomplete one from an interrupted run
	if err := os.Rename(tmp, dir); err != nil {
		b.Fatal(err)
	}
	b.Logf("monorepo: generated %s in %s", dir, time.Since(start).Round(time.Millisecond))
	return dir
}

// fastImport runs `git fast-import` in the bare repository dir with the
// stream that write produces on its stdin.
func fastImport(ctx context.Context, dir string, write func(io.Writer) error) error {
	// --big-file-threshold=1 stores every blob whole: fast-import would
	// delta each against the blob before it in the stream (another file),
	// which leaves the head's blobs at the end of long chains of unrelated
	// deltas and makes the server re-inflate and re-delta them for every
	// shallow clone; a repacked forge repository keeps recent versions
	// whole. (`git repack -adf` gives the same shape at minutes of CPU.)
	cmd := exec.CommandContext(ctx, "git", "fast-import", "--quiet", "--done", "--big-file-threshold=1")
	cmd.Dir, cmd.Env = dir, isolatedGit()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start git fast-import: %w", err)
	}
	w := bufio.NewWriterSize(stdin, 1<<20)
	werr := write(w)
	if werr == nil {
		_, werr = io.WriteString(w, "done\n")
	}
	if werr == nil {
		werr = w.Flush()
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("git fast-import in %s: %w\n%s", dir, err, stderr.String())
	}
	if werr != nil {
		return fmt.Errorf("write the fast-import stream: %w", werr)
	}
	return nil
}

// writeMonorepo writes the whole history of spec as a fast-import stream.
// The first commit holds the deployment (compose.yaml and what it uses);
// then changes grow the tree a few files at a time until it has all its
// files, and the rest rewrite a few files picked at random each (whole:
// fast-import deltas a blob against the blob before it in the stream, not
// against the file's previous version, so the pack holds each version
// compressed, much as a real history of squashed changes does). Content is
// a function of (file, version), so the same scale gives the same
// repository.
func writeMonorepo(w io.Writer, spec monorepoSpec) error {
	g := newCodeGen()
	rng := rand.New(rand.NewPCG(14, uint64(spec.Files)))
	versions := make([]int, spec.Files)
	when := int64(1_600_000_000)
	files := map[string]string{"environments/bench.toml": "commit = \"main\"\n"}
	for p, c := range monorepoDeployment(0) {
		files[p] = c
	}
	if err := writeCommit(w, when, "deployment: compose.yaml and its config", files); err != nil {
		return err
	}
	next := 0 // the next file the growth phase adds
	for c := 1; c < spec.Commits; c++ {
		when += 60
		var touched []int
		for range spec.Touch - c%2 {
			if next < spec.Files {
				touched = append(touched, next)
				next++
			} else {
				touched = append(touched, rng.IntN(spec.Files))
			}
		}
		var m strings.Builder
		for _, f := range touched {
			versions[f]++
			content := g.file(f, versions[f], spec.FileBytes)
			fmt.Fprintf(&m, "M 100644 inline %s\ndata %d\n", spec.path(f), len(content))
			m.Write(content)
			m.WriteByte('\n')
		}
		if err := writeCommitRaw(w, when, fmt.Sprintf("change %d", c), m.String()); err != nil {
			return err
		}
	}
	if next < spec.Files {
		return fmt.Errorf("%d commits are too few to add %d files %d at a time", spec.Commits, spec.Files, spec.Touch)
	}
	return nil
}

// path is where code file f lives: services/svcNNN/pkgNN/fileNN.go.
func (s monorepoSpec) path(f int) string {
	d := f / s.PerDir
	return fmt.Sprintf("services/svc%03d/pkg%02d/file%02d.go", d/s.DirsPerSv, d%s.DirsPerSv, f%s.PerDir)
}

func writeCommit(w io.Writer, when int64, msg string, files map[string]string) error {
	var m strings.Builder
	for p, c := range files {
		fmt.Fprintf(&m, "M 100644 inline %s\ndata %d\n%s\n", p, len(c), c)
	}
	return writeCommitRaw(w, when, msg, m.String())
}

// writeCommitRaw writes one commit on refs/heads/main with the file
// commands in mods. fast-import continues the branch from its last commit.
func writeCommitRaw(w io.Writer, when int64, msg, mods string) error {
	_, err := fmt.Fprintf(w, "commit refs/heads/main\ncommitter lockstep bench <bench@lockstep.invalid> %d +0000\ndata %d\n%s\n%s\n",
		when, len(msg), msg, mods)
	return err
}

// monorepoDeployment is the part of the tree compose uses: compose.yaml
// (release is the one value a release changes), a bind-mounted nginx
// directory, env_files and a configs file: source.
func monorepoDeployment(release int) map[string]string {
	return map[string]string{
		"compose.yaml":               monorepoCompose(release),
		"nginx/default.conf":         "server {\n  listen 80;\n  location / { proxy_pass http://api:8080; }\n  include /etc/nginx/conf.d/snippets/*.conf;\n}\n",
		"nginx/snippets/gzip.conf":   "gzip on;\ngzip_types text/plain application/json;\n",
		"env/web.env":                "NGINX_WORKER_PROCESSES=2\n",
		"env/api.env":                "API_LOG_LEVEL=info\nAPI_LISTEN=:8080\n",
		"config/app.toml":            "[app]\nname = \"monorepo\"\nworkers = 4\n",
		"services/README.md":         "The code of the services; compose.yaml at the root deploys them.\n",
		"docs/operations/release.md": "Releases are squashed commits on main.\n",
	}
}

func monorepoCompose(release int) string {
	return fmt.Sprintf(`services:
  web:
    image: example.invalid/monorepo/web:1
    env_file: ./env/web.env
    volumes:
      - ./nginx:/etc/nginx/conf.d:ro
    ports:
      - "8080:80"
  api:
    image: example.invalid/monorepo/api:1
    env_file: ./env/api.env
    environment:
      RELEASE: "%d"
    configs:
      - source: app
        target: /etc/app/app.toml
  worker:
    image: example.invalid/monorepo/worker:1
    env_file: ./env/api.env
configs:
  app:
    file: ./config/app.toml
`, release)
}

// codeGen writes Go-looking text from a fixed vocabulary: it compresses
// about as well as real code does, which is what the pack size depends on.
type codeGen struct {
	words []string
	buf   []byte
}

func newCodeGen() *codeGen {
	rng := rand.New(rand.NewPCG(1, 2))
	const letters = "abcdefghijklmnopqrstuvwxyz"
	g := &codeGen{}
	for range 1024 {
		n := 3 + rng.IntN(9)
		b := make([]byte, n)
		for i := range b {
			b[i] = letters[rng.IntN(len(letters))]
		}
		g.words = append(g.words, string(b))
	}
	return g
}

// file returns version v of code file f, about size bytes (varying by
// file); the slice is reused by the next call.
func (g *codeGen) file(f, v, size int) []byte {
	rng := rand.New(rand.NewPCG(uint64(f), uint64(v)))
	target := size/2 + int(uint64(f)*2654435761%uint64(size))
	b := append(g.buf[:0], "package pkg\n\nimport (\n\t\"context\"\n\t\"fmt\"\n)\n\n"...)
	word := func() string { return g.words[rng.IntN(len(g.words))] }
	for len(b) < target {
		b = append(b, "func "...)
		b = append(b, word()...)
		b = append(b, "(ctx context.Context, "...)
		b = append(b, word()...)
		b = append(b, " int) error {\n"...)
		for range 2 + rng.IntN(6) {
			switch rng.IntN(4) {
			case 0:
				b = append(b, "\t// "+word()+" "+word()+" "+word()+" "+word()+"\n"...)
			case 1:
				b = append(b, "\t"+word()+" := "+word()+"."+word()+"(ctx, "...)
				b = strconv.AppendInt(b, int64(rng.IntN(1000)), 10)
				b = append(b, ")\n"...)
			case 2:
				b = append(b, "\tif err := "+word()+"(ctx); err != nil {\n\t\treturn fmt.Errorf(\""+word()+": %w\", err)\n\t}\n"...)
			default:
				b = append(b, "\tfor i := 0; i < "+word()+"; i++ {\n\t\t"+word()+"[i] += "+word()+"\n\t}\n"...)
			}
		}
		b = append(b, "\treturn nil\n}\n\n"...)
	}
	g.buf = b
	return b
}
