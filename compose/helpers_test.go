package compose

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const (
	testCommit  = "9fceb02d0ae598e95dc970b74767f19372d61af8"
	testCommit2 = "4d2e1aa3c1b0f0e9d8c7b6a5f4e3d2c1b0a99887"
)

// writeRelease writes files (slash paths relative to the release) into a
// fresh directory and returns its absolute path.
func writeRelease(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// copyRelease copies a testdata tree into a fresh directory, so each test
// loads it from a different release dir, as a new commit would be.
func copyRelease(t *testing.T, from string) string {
	t.Helper()
	dir := t.TempDir()
	err := filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		target := filepath.Join(dir, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func testOptions(dir string) LoadOptions {
	return LoadOptions{
		ReleaseDir:  dir,
		Project:     "shop",
		Environment: "production",
		Commit:      testCommit,
		PinVars:     map[string]string{},
		Version:     "0.1.0-test",
	}
}

func load(t *testing.T, opts LoadOptions) *Project {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := Load(ctx, opts)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return p
}

// writeSecrets is the apply step that follows a load of p with opts.
func writeSecrets(t *testing.T, p *Project, opts LoadOptions) {
	t.Helper()
	if err := WriteSecrets(p, opts.Secrets); err != nil {
		t.Fatalf("WriteSecrets: %v", err)
	}
}

// loadErr loads and returns the *LoadError it must fail with.
func loadErr(t *testing.T, opts LoadOptions) *LoadError {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := Load(ctx, opts)
	if err == nil {
		t.Fatalf("Load succeeded with %d services, want an error", len(p.Services))
	}
	var le *LoadError
	if !errors.As(err, &le) {
		t.Fatalf("Load error %T %q is not a *LoadError", err, err)
	}
	return le
}

func assertContains(t *testing.T, got string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Errorf("%q does not contain %q", got, w)
		}
	}
}
