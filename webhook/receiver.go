// Package webhook owns the receiving end of push notifications from git
// hosts (GitHub, GitLab, Gitea/Forgejo, Bitbucket Cloud): checking each
// delivery's signature over its raw body, reading whether it is a push to
// the tracked branch, and answering the git host.
//
// It is a package of its own because it is the only code of lockstep that
// may face the internet: it is kept small, has no dependency on the rest of
// lockstep, and is fuzzed (FuzzVerify, FuzzParsePush) on its own.
//
// It must never trust a payload: nothing is parsed before the signature is
// verified, and a valid push only nudges the agent to look at git now,
// carrying no data from the delivery (no commit, no branch content), so a
// forged or replayed delivery can at worst cause one more poll. It never
// logs or returns the secret or a signature, and never reads more than its
// body bound.
package webhook

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// DefaultMaxBody bounds a delivery's body when Options.MaxBody is zero. A
// GitHub push of a large merge stays well under it; GitHub itself caps
// payloads at 25 MB but trims commit lists long before.
const DefaultMaxBody = 1 << 20

// Options configures a Receiver.
type Options struct {
	// SecretFile holds the shared secret the git host signs deliveries
	// with (leading and trailing white space, such as the newline editors
	// add, is not part of it). It is read once, by New: rotating the
	// secret means building a new Receiver, which the agent does on
	// SIGHUP and restart.
	SecretFile string
	// Branch is the tracked branch: pushes to other branches are answered
	// 200 "ignored".
	Branch string
	// MaxBody bounds a delivery's body; larger ones are refused with 413
	// without being read in full. Zero means DefaultMaxBody.
	MaxBody int64
	// Nudge is called once for each verified push to Branch. It must not
	// block (the git host waits for the answer, and gives up after ~10s):
	// a non-blocking send on a coalescing channel is what it is for.
	Nudge func(provider Provider)
	// Log receives one line per delivery: provider, event, branches,
	// result. Never the secret or the signature.
	Log zerolog.Logger
}

// Receiver answers webhook deliveries. It is safe for concurrent use; it
// holds no state beyond what New read.
type Receiver struct {
	secret  []byte
	branch  string
	maxBody int64
	nudge   func(Provider)
	log     zerolog.Logger
}

// New reads the secret file and returns a Receiver. It fails when the file
// is missing, unreadable or empty, naming the file.
func New(opts Options) (*Receiver, error) {
	if opts.SecretFile == "" {
		return nil, errors.New("webhook: no secret file configured: set [webhook].secret_file to a file holding the secret also set on the git host")
	}
	if opts.Branch == "" {
		return nil, errors.New("webhook: no branch to watch")
	}
	if opts.Nudge == nil {
		return nil, errors.New("webhook: no Nudge function")
	}
	if opts.MaxBody < 0 {
		return nil, fmt.Errorf("webhook: MaxBody must not be negative, got %d", opts.MaxBody)
	}
	maxBody := opts.MaxBody
	if maxBody == 0 {
		maxBody = DefaultMaxBody
	}
	data, err := os.ReadFile(opts.SecretFile)
	if err != nil {
		return nil, fmt.Errorf("webhook: read secret file %s ([webhook].secret_file): %w", opts.SecretFile, err)
	}
	secret := strings.TrimSpace(string(data))
	if secret == "" {
		return nil, fmt.Errorf("webhook: secret file %s ([webhook].secret_file) is empty: put the secret set on the git host in it", opts.SecretFile)
	}
	if fi, err := os.Stat(opts.SecretFile); err == nil && fi.Mode().Perm()&0o004 != 0 {
		opts.Log.Warn().Str("file", opts.SecretFile).Str("mode", fi.Mode().Perm().String()).
			Msg("webhook secret file is readable by every user: chmod 0600 it")
	}
	return &Receiver{
		secret:  []byte(secret),
		branch:  opts.Branch,
		maxBody: maxBody,
		nudge:   opts.Nudge,
		log:     opts.Log,
	}, nil
}

// Handler routes POST /hooks/github, /hooks/gitlab, /hooks/gitea and
// /hooks/bitbucket. Other methods get 405, other paths 404.
func (r *Receiver) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, p := range Providers() {
		mux.Handle("POST /hooks/"+string(p), r.deliveryHandler(p))
	}
	return mux
}

func (r *Receiver) deliveryHandler(p Provider) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		log := r.log.With().Str("provider", string(p)).Str("remote", req.RemoteAddr).Logger()

		// A declared length over the bound is refused before a byte of
		// the body is read.
		if req.ContentLength > r.maxBody {
			log.Warn().Int64("bytes", req.ContentLength).Int64("max_bytes", r.maxBody).Str("result", "too large").Msg("webhook delivery refused")
			reply(w, http.StatusRequestEntityTooLarge, "payload too large")
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, r.maxBody))
		if err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				log.Warn().Int64("max_bytes", r.maxBody).Str("result", "too large").Msg("webhook delivery refused")
				reply(w, http.StatusRequestEntityTooLarge, "payload too large")
				return
			}
			log.Warn().Err(err).Str("result", "unreadable").Msg("webhook delivery refused")
			reply(w, http.StatusBadRequest, "could not read body")
			return
		}

		if err := Verify(p, r.secret, req.Header, body); err != nil {
			reason := "bad signature"
			if errors.Is(err, ErrMissingSignature) {
				reason = "missing signature"
			}
			// err names the header only; it never holds its value.
			log.Warn().Str("result", "unauthorized").Str("reason", reason).Str("detail", err.Error()).Msg("webhook delivery refused")
			reply(w, http.StatusUnauthorized, reason)
			return
		}

		ev, err := ParsePush(p, req.Header, body)
		if err != nil {
			log.Warn().Err(err).Str("result", "malformed").Msg("webhook delivery refused")
			reply(w, http.StatusBadRequest, "malformed delivery: "+err.Error())
			return
		}
		log = log.With().Str("event", ev.Name).Strs("branches", ev.Branches).Logger()
		switch {
		case ev.Kind == KindPing:
			log.Info().Str("result", "pong").Msg("webhook ping")
			reply(w, http.StatusOK, "pong")
		case ev.Pushes(r.branch):
			r.nudge(p)
			log.Info().Str("result", "accepted").Msg("webhook push to the tracked branch: looking at git now")
			reply(w, http.StatusAccepted, "accepted")
		default:
			log.Debug().Str("result", "ignored").Str("branch", r.branch).Msg("webhook delivery ignored: not a push to the tracked branch")
			reply(w, http.StatusOK, "ignored")
		}
	})
}

func reply(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, msg+"\n")
}

// Timeouts of the webhook listener. It may face the internet, so a client
// that sends headers or a body slowly is cut off instead of holding a
// connection open.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 30 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 60 * time.Second
	maxHeaderBytes    = 64 << 10
	shutdownTimeout   = 5 * time.Second
)

// Serve answers deliveries on ln until ctx is done, then shuts down
// gracefully (bounded to a few seconds) and returns nil. The server has
// read, write and idle timeouts and a header size bound suited to a
// listener that faces the internet.
func (r *Receiver) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           r.Handler(),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		// Serve only returns on its own when the listener fails.
		return fmt.Errorf("webhook: serve on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	<-served
	return nil
}

// ListenAndServe listens on the TCP address addr ([webhook].listen) and
// calls Serve.
func (r *Receiver) ListenAndServe(ctx context.Context, addr string) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("webhook: listen on %s ([webhook].listen): %w", addr, err)
	}
	return r.Serve(ctx, ln)
}
