package gitsource

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

func TestCtxLoggerTellsNoneSet(t *testing.T) {
	var buf bytes.Buffer
	pass := zerolog.New(&buf).With().Str("pass", "p1").Logger()
	if _, ok := ctxLogger(context.Background()); ok {
		t.Error("a bare context reported a logger")
	}
	if _, ok := ctxLogger(pass.WithContext(context.Background())); !ok {
		t.Error("the pass logger in ctx was not found")
	}
	// A disabled logger is not stored over nothing, and one stored over
	// a real logger means "none" too: Options.Log is not to be silenced.
	off := zerolog.Nop()
	if _, ok := ctxLogger(off.WithContext(pass.WithContext(context.Background()))); ok {
		t.Error("a disabled logger in ctx counted as set")
	}

	prev := zerolog.DefaultContextLogger
	t.Cleanup(func() { zerolog.DefaultContextLogger = prev })
	def := zerolog.New(&buf)
	zerolog.DefaultContextLogger = &def
	if _, ok := ctxLogger(context.Background()); ok {
		t.Error("zerolog.DefaultContextLogger counted as a logger in ctx")
	}
}

func TestLogForCarriesPassFields(t *testing.T) {
	var own, pass bytes.Buffer
	s, err := New(Options{URL: t.TempDir(), StateDir: t.TempDir(), Log: zerolog.New(&own)})
	if err != nil {
		t.Fatal(err)
	}
	s.logFor(context.Background()).Info().Msg("no pass")
	if got := own.String(); !strings.Contains(got, `"component":"gitsource"`) || !strings.Contains(got, "no pass") {
		t.Errorf("without a ctx logger, Options.Log got %q", got)
	}

	passLog := zerolog.New(&pass).With().Str("env", "prod").Str("pass", "p1").Logger()
	s.logFor(passLog.WithContext(context.Background())).Info().Msg("in a pass")
	got := pass.String()
	for _, want := range []string{`"env":"prod"`, `"pass":"p1"`, `"component":"gitsource"`, `"branch":"main"`, "in a pass"} {
		if !strings.Contains(got, want) {
			t.Errorf("pass log line %q lacks %s", got, want)
		}
	}
	if strings.Contains(own.String(), "in a pass") {
		t.Error("a pass's line also went to Options.Log")
	}
}
