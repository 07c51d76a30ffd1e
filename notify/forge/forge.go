// Package forge owns posting deploy results back to the forge the
// repository lives on: a commit status per environment and host on the
// commit deployed (GitHub, GitLab, Gitea and Forgejo), and on GitHub a
// deployment per environment and commit with its statuses.
//
// It never blocks a pass: Report only enqueues, a full queue drops the
// status with an error log, and one goroutine (Run) posts with a timeout
// per attempt and bounded, jittered retries. It never logs or returns the
// API token, never decides what a pass did (it maps the agent's records),
// and never reads the forge's answers as instructions: a status it cannot
// post is logged and dropped.
package forge

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/notify"
	"github.com/lockstep-gitops/lockstep/reconcile"
)

// Kinds of forge.
const (
	KindGitHub  = "github"
	KindGitLab  = "gitlab"
	KindGitea   = "gitea"
	KindForgejo = "forgejo"
)

// State is a deploy state, mapped to each forge's own words by its client.
type State string

// States.
const (
	StatePending  State = "pending"  // an apply of the commit started
	StateSuccess  State = "success"  // applied and passed the health gate
	StateFailure  State = "failure"  // applied and failed the health gate
	StateError    State = "error"    // the pass of the commit failed before or while applying (load, pull)
	StateInactive State = "inactive" // the environment was torn down (GitHub deployments only)
)

// Status is one result to post: the state of Environment at Commit.
type Status struct {
	Environment string
	Commit      string // the full commit id the status goes on
	State       State
	Description string // one line; trimmed to maxDescription
	URL         string // the environment's URL (target_url, environment_url), "" if none
	Review      bool   // a review environment: transient on GitHub
}

// Settings say where to post; config.Forge converts to them field by
// field.
type Settings struct {
	Kind        string // KindGitHub, KindGitLab, KindGitea or KindForgejo
	APIURL      string // API base without a trailing slash
	TokenFile   string // read once by New, trimmed
	Repository  string // owner/name (GitLab: group/subgroup/name)
	Context     string // status context, {environment} and {host} replaced
	Host        string // {host}; "" means os.Hostname()
	Deployments bool   // GitHub: keep deployments too
}

// Defaults of Options.
const (
	DefaultTimeout   = 10 * time.Second
	DefaultAttempts  = 5
	DefaultQueueSize = 100
	DefaultFlush     = 5 * time.Second
	// Retries wait 1s, 2s, 4s... (equal jitter), at most 30s.
	DefaultBackoffInitial = time.Second
	DefaultBackoffMax     = 30 * time.Second
)

// Options tune posting. The zero value is usable.
type Options struct {
	Timeout   time.Duration // per attempt; default 10s
	Attempts  int           // per status; default 5
	QueueSize int           // statuses waiting; default 100, then dropped with an error log
	Flush     time.Duration // how long Run keeps posting after its context is done; default 5s
	Log       zerolog.Logger
	Client    *http.Client // default: one that does not follow redirects
	Version   string       // User-Agent lockstep/<Version>
	// Backoff is the delay between attempts; zero fields take the
	// defaults above. Tests set Rand.
	Backoff reconcile.Backoff
	// Sleep waits d or until ctx is done; default a timer. Tests inject
	// one that does not wait.
	Sleep func(ctx context.Context, d time.Duration) error
	// Environment says what the reporter needs of an environment beyond
	// its name; nil means none has a URL and none is a review one.
	Environment func(name string) EnvInfo
}

// EnvInfo is what the daemon knows of an environment.
type EnvInfo struct {
	URL    string // where it is reachable (a review app's URL), "" if unknown
	Review bool   // it belongs to an [[environment_set]]: transient
}

// Reporter posts Statuses to one forge. Report and the record helpers may
// be called from any goroutine; Run is called once. A nil Reporter (no
// [forge] configured) ignores everything.
type Reporter struct {
	client   client
	label    string // "gitea me/app", for logs
	host     string
	context  string
	log      zerolog.Logger
	timeout  time.Duration
	attempts int
	flush    time.Duration
	backoff  reconcile.Backoff
	sleep    func(ctx context.Context, d time.Duration) error
	env      func(name string) EnvInfo
	queue    chan Status

	mu   sync.Mutex
	last map[string]State // environment + commit -> state last enqueued
}

// New reads the token file and makes a Reporter for s.
func New(s Settings, opts Options) (*Reporter, error) {
	data, err := os.ReadFile(s.TokenFile)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("token_file: cannot read %s: %v", s.TokenFile, err)
	}
	token := strings.TrimSpace(string(data))
	if token == "" {
		return nil, fmt.Errorf("token_file: %s is empty", s.TokenFile)
	}
	if s.Host == "" {
		if s.Host, err = os.Hostname(); err != nil {
			return nil, fmt.Errorf("host: cannot tell this machine's host name for the status context (set host): %w", err)
		}
	}
	opts = withDefaults(opts)
	api := &apiClient{http: opts.Client, base: s.APIURL, token: token, repo: s.Repository,
		kind: s.Kind, userAgent: userAgent(opts.Version)}
	var c client
	switch s.Kind {
	case KindGitHub:
		c = &githubClient{api: api, deployments: s.Deployments, ids: map[string]int64{}}
	case KindGitLab:
		c = &gitlabClient{api: api}
	case KindGitea, KindForgejo:
		c = &giteaClient{api: api}
	default:
		return nil, fmt.Errorf("kind: unknown forge %q", s.Kind)
	}
	return &Reporter{
		client: c, label: s.Kind + " " + s.Repository, host: s.Host, context: s.Context,
		log: opts.Log, timeout: opts.Timeout, attempts: opts.Attempts, flush: opts.Flush,
		backoff: opts.Backoff, sleep: opts.Sleep, env: opts.Environment,
		queue: make(chan Status, opts.QueueSize), last: map[string]State{},
	}, nil
}

func withDefaults(o Options) Options {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Attempts <= 0 {
		o.Attempts = DefaultAttempts
	}
	if o.QueueSize <= 0 {
		o.QueueSize = DefaultQueueSize
	}
	if o.Flush <= 0 {
		o.Flush = DefaultFlush
	}
	if o.Backoff.Initial <= 0 {
		o.Backoff.Initial = DefaultBackoffInitial
	}
	if o.Backoff.Max <= 0 {
		o.Backoff.Max = DefaultBackoffMax
	}
	if o.Sleep == nil {
		o.Sleep = sleepCtx
	}
	if o.Client == nil {
		o.Client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	return o
}

func userAgent(version string) string {
	if version == "" {
		return "lockstep"
	}
	return "lockstep/" + version
}

// Host is what {host} stands for in the context.
func (r *Reporter) Host() string { return r.host }

// contextOf is the status context of env.
func (r *Reporter) contextOf(env string) string {
	return strings.NewReplacer("{environment}", env, "{host}", r.host).Replace(r.context)
}

// Report enqueues s and returns at once. A status equal to the last one
// enqueued for its environment and commit is not posted again (a drift
// repair of a deployed commit, a failure retried with backoff). A full
// queue drops s with an error log.
func (r *Reporter) Report(s Status) {
	// Only a teardown may not know its commit: its deployment is then the
	// environment's newest.
	if r == nil || s.Environment == "" || (s.Commit == "" && s.State != StateInactive) {
		return
	}
	s = r.complete(s)
	if !r.changed(s) {
		return
	}
	select {
	case r.queue <- s:
	default:
		r.log.Error().Str("forge", r.label).Str("env", s.Environment).Str("commit", s.Commit).
			Str("state", string(s.State)).Int("queue_size", cap(r.queue)).
			Msg("forge status dropped: queue full (the forge is slow or down)")
	}
}

// complete fills what the daemon knows of the environment.
func (r *Reporter) complete(s Status) Status {
	if r.env != nil {
		info := r.env(s.Environment)
		if s.URL == "" {
			s.URL = info.URL
		}
		s.Review = s.Review || info.Review
	}
	s.Description = trimDescription(s.Description)
	return s
}

// changed records s as the last state of its environment and commit and
// says whether it differs from the one before.
func (r *Reporter) changed(s Status) bool {
	k := s.Environment + "\x00" + s.Commit
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last[k] == s.State {
		return false
	}
	if len(r.last) >= 1000 {
		clear(r.last) // a long-lived agent; forgetting costs one repeated post
	}
	r.last[k] = s.State
	return true
}

// Run posts queued statuses until ctx is done, then keeps posting what is
// queued for up to Options.Flush; what is left then is dropped with an
// error log.
func (r *Reporter) Run(ctx context.Context) {
	if r == nil {
		return
	}
	postCtx, cancel := notify.FlushContext(ctx, r.flush)
	defer cancel()
	for {
		select {
		case <-ctx.Done():
			r.drain(postCtx)
			return
		case s := <-r.queue:
			r.post(postCtx, s)
		}
	}
}

// drain posts what is queued until nothing is left or ctx is done.
func (r *Reporter) drain(ctx context.Context) {
	for {
		if ctx.Err() != nil {
			if left := len(r.queue); left > 0 {
				r.log.Error().Str("forge", r.label).Int("dropped", left).
					Msg("forge statuses dropped: shutdown flush time is over")
			}
			return
		}
		select {
		case s := <-r.queue:
			r.post(ctx, s)
		default:
			return
		}
	}
}

// post sends s and logs a failure as an error. The status is lost, and
// forgotten: the next report of the same state tries again.
func (r *Reporter) post(ctx context.Context, s Status) {
	err := r.Send(ctx, s)
	if err == nil {
		return
	}
	r.log.Error().Err(err).Str("forge", r.label).Str("env", s.Environment).Str("commit", s.Commit).
		Str("state", string(s.State)).Msg("forge status not posted")
	k := s.Environment + "\x00" + s.Commit
	r.mu.Lock()
	if r.last[k] == s.State {
		delete(r.last, k)
	}
	r.mu.Unlock()
}

// Send posts s now, retrying with backoff until the attempts are used up
// or ctx is done, and returns the last error. Run calls it for what is
// queued; the CLI calls it directly with a short deadline.
func (r *Reporter) Send(ctx context.Context, s Status) error {
	if r == nil {
		return nil
	}
	s = r.complete(s)
	log := r.log.With().Str("forge", r.label).Str("env", s.Environment).Str("commit", s.Commit).
		Str("state", string(s.State)).Logger()
	b := r.backoff
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, r.timeout)
		err := r.client.post(actx, s, r.contextOf(s.Environment))
		cancel()
		if err == nil {
			log.Debug().Int("attempt", attempt).Msg("forge status posted")
			return nil
		}
		if !retryable(err) || attempt >= r.attempts || ctx.Err() != nil {
			return err
		}
		delay := b.Next()
		log.Warn().Err(err).Int("attempt", attempt).Dur("retry_in", delay).Msg("forge status attempt failed; retrying")
		if serr := r.sleep(ctx, delay); serr != nil {
			return fmt.Errorf("%w (no more attempts: %v)", err, serr)
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// maxDescription is GitHub's limit on a status description; the others
// take longer ones, but one line that fits everywhere reads best.
const maxDescription = 140

func trimDescription(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > maxDescription {
		s = string(r[:maxDescription-1]) + "…"
	}
	return s
}
