// Package notify owns delivering notifications (failure, rollback, recovery
// and deploy events of an environment) to generic JSON webhooks and to
// Slack-compatible incoming webhooks, with a timeout per attempt and retries
// with backoff.
//
// It never blocks the agent loop: Notify only enqueues, and a full queue
// drops the event with an error log. It never logs or returns a target's URL
// or any part of it that may hold a secret (user info, path, query): a target
// is named by its kind and host only, e.g. "slack hooks.slack.com". URLs are
// read from files, never from the config text.
package notify

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/reconcile"
)

// Target kinds.
const (
	KindWebhook = "webhook" // POST of the Event as JSON (BodyExample)
	KindSlack   = "slack"   // POST of {"text": "..."} to a Slack-compatible incoming webhook
)

// defaultEvents are the events a target receives when it names none, the
// same default as the [[notify]] events key.
var defaultEvents = []reconcile.EventKind{reconcile.EventFailure, reconcile.EventRollback, reconcile.EventRecovery}

// Defaults of Options.
const (
	DefaultTimeout   = 10 * time.Second
	DefaultAttempts  = 5
	DefaultQueueSize = 100
	// DefaultFlush bounds how long Run keeps delivering queued events after
	// its context is done, so a shutdown is never held up by a dead endpoint.
	DefaultFlush = 5 * time.Second
)

// BodyExample is the JSON body a "webhook" target receives (shown indented
// here; it is sent compact). Fields with omitempty are left out when empty;
// time is RFC 3339 in UTC. A test keeps it in step with Event.
const BodyExample = `{
  "event": "rollback",
  "environment": "production",
  "project": "shop",
  "commit": "9fceb02d0ae598e95dc970b74767f19372d61af8",
  "previous": "4d2e1aa0c3b2b8a1c2f5e6d7a8b9c0d1e2f3a4b5",
  "service": "web",
  "reason": "unhealthy: health check failed 3 times",
  "logs": [
    "listening on :8080",
    "panic: connect to database: connection refused"
  ],
  "host": "web-1",
  "time": "2026-03-14T09:26:53Z"
}`

// Event is what happened to an environment. It is also, as is, the JSON
// body posted to "webhook" targets.
type Event struct {
	Kind        reconcile.EventKind `json:"event"` // the reconcile.Event* kinds
	Environment string              `json:"environment"`
	Project     string              `json:"project,omitempty"`
	Commit      string              `json:"commit"`             // the revision the event is about
	Previous    string              `json:"previous,omitempty"` // e.g. the revision rolled back to
	Service     string              `json:"service,omitempty"`  // the failing service
	Reason      string              `json:"reason,omitempty"`
	Logs        []string            `json:"logs,omitempty"` // last log lines of the failing container
	Host        string              `json:"host"`           // os.Hostname of the agent
	Time        time.Time           `json:"time"`
}

// Target is one place events are posted to; config.Notify converts to it
// field by field.
type Target struct {
	Kind    string                // KindWebhook or KindSlack
	URLFile string                // file holding the URL; read once by New, trimmed
	Events  []reconcile.EventKind // event kinds to post; empty means failure, rollback, recovery
}

// Options tune delivery. The zero value is usable.
type Options struct {
	Timeout   time.Duration // per delivery attempt, default 10s
	Attempts  int           // attempts per event and target, default 5; 1s, 2s, 4s... between them
	QueueSize int           // events waiting per target, default 100; when full, new events are dropped with an error log
	Log       zerolog.Logger
	Client    *http.Client // default: one with Timeout that does not follow redirects

	// Sleep waits d between attempts, returning early with ctx's error when
	// ctx is done. Tests inject one that does not wait; default a timer.
	Sleep func(ctx context.Context, d time.Duration) error
	// Flush bounds how long Run keeps delivering after its context is done;
	// default 5s.
	Flush time.Duration
	// Version goes into the User-Agent ("lockstep/<Version>"); "" sends
	// "lockstep".
	Version string
	// Host fills Event.Host when an event has none; default os.Hostname().
	Host string
}

// Notifier delivers events to its targets. Notify may be called from any
// goroutine, before or while Run runs; Run is called once.
type Notifier struct {
	targets   []*target
	log       zerolog.Logger
	client    *http.Client
	timeout   time.Duration
	attempts  int
	flush     time.Duration
	sleep     func(context.Context, time.Duration) error
	userAgent string
	host      string
}

// target is a Target with its URL read and its queue. Each target has its
// own queue and worker so that a hanging endpoint delays no other target.
type target struct {
	kind   string
	url    string   // never logged: see redact
	label  string   // kind and host, what logs and errors name the target by
	secret []string // parts of url that redact removes from any text
	events []reconcile.EventKind
	queue  chan Event
}

// New reads every target's URL file now, so a missing file or a malformed
// URL is a startup error rather than a lost alert at 3 a.m. Errors name the
// file and never include its content.
func New(targets []Target, opts Options) (*Notifier, error) {
	n := &Notifier{
		log:       opts.Log,
		client:    opts.Client,
		timeout:   opts.Timeout,
		attempts:  opts.Attempts,
		flush:     opts.Flush,
		sleep:     opts.Sleep,
		userAgent: "lockstep",
		host:      opts.Host,
	}
	if n.timeout <= 0 {
		n.timeout = DefaultTimeout
	}
	if n.attempts <= 0 {
		n.attempts = DefaultAttempts
	}
	if n.flush <= 0 {
		n.flush = DefaultFlush
	}
	if n.sleep == nil {
		n.sleep = sleepCtx
	}
	if opts.Version != "" {
		n.userAgent = "lockstep/" + opts.Version
	}
	if n.client == nil {
		n.client = &http.Client{
			Timeout: n.timeout,
			// A redirected POST turns into a GET and would "succeed" without
			// delivering anything; report the 3xx instead.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if n.host == "" {
		// Best effort: an event without a host is still worth sending.
		n.host, _ = os.Hostname()
	}
	queueSize := opts.QueueSize
	if queueSize <= 0 {
		queueSize = DefaultQueueSize
	}

	var errs []error
	for i, t := range targets {
		tg, err := newTarget(t, queueSize)
		if err != nil {
			errs = append(errs, fmt.Errorf("notify target %d (%s): %w", i, t.Kind, err))
			continue
		}
		n.targets = append(n.targets, tg)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return n, nil
}

func newTarget(t Target, queueSize int) (*target, error) {
	switch t.Kind {
	case KindWebhook, KindSlack:
	default:
		return nil, fmt.Errorf("kind must be %q or %q", KindWebhook, KindSlack)
	}
	events := t.Events
	if len(events) == 0 {
		events = defaultEvents
	}
	for _, ev := range events {
		if !slices.Contains(reconcile.EventKinds, ev) {
			names := make([]string, len(reconcile.EventKinds))
			for i, k := range reconcile.EventKinds {
				names[i] = string(k)
			}
			return nil, fmt.Errorf("event %q is unknown; use one of %s", ev, strings.Join(names, ", "))
		}
	}
	if t.URLFile == "" {
		return nil, errors.New("url_file is required: a file holding the URL to post to")
	}
	data, err := os.ReadFile(t.URLFile)
	if err != nil {
		// The *PathError names the file; it never holds the content.
		return nil, fmt.Errorf("read url_file: %w", err)
	}
	raw := strings.TrimSpace(string(data))
	if raw == "" {
		return nil, fmt.Errorf("url_file %s is empty: write the %s URL into it", t.URLFile, t.Kind)
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse quotes the whole URL in its error; keep only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("url_file %s does not hold a valid URL: %v", t.URLFile, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("url_file %s must hold an http:// or https:// URL with a host", t.URLFile)
	}
	return &target{
		kind:   t.Kind,
		url:    raw,
		label:  t.Kind + " " + u.Host,
		secret: secretParts(raw, u),
		events: slices.Clone(events),
		queue:  make(chan Event, queueSize),
	}, nil
}

func (t *target) wants(kind reconcile.EventKind) bool { return slices.Contains(t.events, kind) }

// Notify enqueues ev for every target that asked for ev.Kind and returns at
// once: it never waits for the network or for a full queue. An empty
// ev.Host is filled with the agent's host name and a zero ev.Time with now.
// A nil Notifier (no notifications configured) ignores every event.
func (n *Notifier) Notify(ev Event) {
	if n == nil {
		return
	}
	if ev.Host == "" {
		ev.Host = n.host
	}
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	ev.Time = ev.Time.UTC()
	// The caller may reuse its slice once Notify returns.
	ev.Logs = slices.Clone(ev.Logs)
	for _, t := range n.targets {
		if !t.wants(ev.Kind) {
			continue
		}
		select {
		case t.queue <- ev:
		default:
			n.log.Error().Str("target", t.label).Str("event", string(ev.Kind)).
				Str("env", ev.Environment).Str("commit", ev.Commit).Int("queue_size", cap(t.queue)).
				Msg("notification dropped: queue full (the endpoint is slow or down)")
		}
	}
}

// Run delivers queued events until ctx is done, then keeps delivering what
// is still queued (and the delivery in flight) for up to Options.Flush
// before it returns. Events still queued then are dropped with an error log.
func (n *Notifier) Run(ctx context.Context) {
	// Deliveries run under their own context so that a shutdown does not
	// abort the alert that explains it; it ends Flush after ctx does.
	deliverCtx, cancel := FlushContext(ctx, n.flush)
	defer cancel()

	var wg sync.WaitGroup
	for _, t := range n.targets {
		wg.Go(func() { n.work(ctx, deliverCtx, t) })
	}
	wg.Wait()
}

func (n *Notifier) work(ctx, deliverCtx context.Context, t *target) {
	for {
		select {
		case <-ctx.Done():
			n.drain(deliverCtx, t, nil)
			return
		case ev := <-t.queue:
			if ctx.Err() != nil {
				// Both were ready: shutting down wins, ev goes first.
				n.drain(deliverCtx, t, []Event{ev})
				return
			}
			n.deliver(deliverCtx, t, ev)
		}
	}
}

// drain delivers pending, then what is queued for t, until nothing is left
// or ctx (the flush deadline) is done; what is left then is dropped with
// one error log.
func (n *Notifier) drain(ctx context.Context, t *target, pending []Event) {
	for {
		if ctx.Err() != nil {
			if left := len(pending) + len(t.queue); left > 0 {
				n.log.Error().Str("target", t.label).Int("dropped", left).
					Msg("notifications dropped: shutdown flush time is over")
			}
			return
		}
		if len(pending) > 0 {
			n.deliver(ctx, t, pending[0])
			pending = pending[1:]
			continue
		}
		select {
		case ev := <-t.queue:
			n.deliver(ctx, t, ev)
		default:
			return
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}

// FlushContext is the context deliveries run under once Run started: not
// cancelled with ctx, so a shutdown does not abort the message that
// explains it, but flush after ctx is done. Cancel it when Run returns.
func FlushContext(ctx context.Context, flush time.Duration) (context.Context, context.CancelFunc) {
	out, cancel := context.WithCancel(context.WithoutCancel(ctx))
	go func() {
		select {
		case <-ctx.Done():
		case <-out.Done():
			return
		}
		timer := time.NewTimer(flush)
		defer timer.Stop()
		select {
		case <-timer.C:
			cancel()
		case <-out.Done():
		}
	}()
	return out, cancel
}
