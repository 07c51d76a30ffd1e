package gitsource

import (
	"context"

	"github.com/rs/zerolog"
)

// logFor is the logger for work done under ctx. A pass puts its logger in
// ctx (logger.WithContext) so that what gitsource logs for it carries the
// pass's fields (env, commit, pass id); without one, the Source's own
// logger (Options.Log) is used. Either way the line says it is gitsource's
// and which repository and branch it is about.
func (s *Source) logFor(ctx context.Context) *zerolog.Logger {
	l, ok := ctxLogger(ctx)
	if !ok {
		return &s.log
	}
	withFields := l.With().Str("component", "gitsource").Str("repo", s.redacted).Str("branch", s.opts.Branch).Logger()
	return &withFields
}

// ctxLogger returns the logger ctx carries, and false when it carries
// none: zerolog.Ctx then returns zerolog.DefaultContextLogger, or a
// disabled logger when that is nil, and using either would drop the lines
// Options.Log is there to keep.
func ctxLogger(ctx context.Context) (*zerolog.Logger, bool) {
	if ctx == nil {
		return nil, false
	}
	l := zerolog.Ctx(ctx)
	if l == nil || l == zerolog.DefaultContextLogger || l.GetLevel() == zerolog.Disabled {
		return nil, false
	}
	return l, true
}
