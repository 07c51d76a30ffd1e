package notify

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

const (
	// firstDelay doubles after every failed attempt, up to maxDelay.
	firstDelay = time.Second
	maxDelay   = time.Minute
	// maxRetryAfter is the longest Retry-After honoured: a longer one would
	// hold every later event of the target behind it, so the normal backoff
	// applies instead.
	maxRetryAfter = 30 * time.Second
	// maxErrorBody bounds how much of a failed response's body is logged.
	maxErrorBody = 256
)

// attemptError is why one attempt failed and whether another may succeed.
type attemptError struct {
	status     int           // HTTP status; 0 for a network error
	retry      bool          // network errors, 5xx and 429
	retryAfter time.Duration // from a Retry-After header, 0 if none or too long
	err        error
}

func (e *attemptError) Error() string { return e.err.Error() }
func (e *attemptError) Unwrap() error { return e.err }

// deliver posts ev to t, retrying with backoff, and logs the outcome. It
// gives up after the configured attempts, on a response that retrying will
// not change (4xx other than 429) or when ctx is done.
func (n *Notifier) deliver(ctx context.Context, t *target, ev Event) {
	log := n.log.With().Str("target", t.label).Str("event", string(ev.Kind)).
		Str("env", ev.Environment).Str("commit", ev.Commit).Logger()
	body, err := t.body(ev)
	if err != nil {
		log.Error().Err(err).Msg("notification not delivered: cannot encode it")
		return
	}
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			log.Error().Int("attempt", attempt).Msg("notification not delivered: agent shutting down")
			return
		}
		aerr := n.attempt(ctx, t, body)
		if aerr == nil {
			log.Info().Int("attempt", attempt).Msg("notification delivered")
			return
		}
		switch {
		case !aerr.retry:
			withStatus(log.Error(), aerr).Int("attempt", attempt).
				Msg("notification not delivered: the endpoint refused it; check the URL in the target's url_file")
			return
		case attempt >= n.attempts:
			withStatus(log.Error(), aerr).Int("attempt", attempt).
				Msg("notification not delivered: giving up after the last attempt")
			return
		}
		delay := aerr.retryAfter
		if delay == 0 {
			delay = backoff(attempt)
		}
		// A warning, not an error yet: the next attempt may succeed.
		withStatus(log.Warn(), aerr).Int("attempt", attempt).Dur("retry_in", delay).
			Msg("notification attempt failed; retrying")
		if err := n.sleep(ctx, delay); err != nil {
			log.Error().Int("attempt", attempt).Msg("notification not delivered: agent shutting down")
			return
		}
	}
}

func withStatus(e *zerolog.Event, aerr *attemptError) *zerolog.Event {
	e = e.Err(aerr)
	if aerr.status != 0 {
		e = e.Int("status", aerr.status)
	}
	return e
}

// backoff is the delay after the given failed attempt: 1s, 2s, 4s...
func backoff(attempt int) time.Duration {
	d := firstDelay
	for i := 1; i < attempt && d < maxDelay; i++ {
		d *= 2
	}
	return min(d, maxDelay)
}

// attempt makes one POST. Its error never holds the URL: the client's
// *url.Error (which quotes it) is unwrapped, and whatever text remains is
// passed through t.redact.
func (n *Notifier) attempt(ctx context.Context, t *target, body []byte) *attemptError {
	ctx, cancel := context.WithTimeout(ctx, n.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(body))
	if err != nil {
		return &attemptError{err: t.redactErr("build request", err)}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", n.userAgent)
	resp, err := n.client.Do(req)
	if err != nil {
		return &attemptError{retry: true, err: t.redactErr("post", err)}
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	// Drain a little more so the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	msg := fmt.Sprintf("%s: HTTP %s", t.label, resp.Status)
	if s := strings.TrimSpace(string(snippet)); s != "" {
		msg += ": " + s
	}
	aerr := &attemptError{
		status: resp.StatusCode,
		retry:  resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests,
		err:    errors.New(t.redact(msg)),
	}
	if aerr.retry {
		aerr.retryAfter = retryAfter(resp.Header.Get("Retry-After"), time.Now())
	}
	return aerr
}

// retryAfter parses a Retry-After value (seconds or an HTTP date) and
// returns it when it is positive and at most maxRetryAfter, else 0.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.Atoi(v); err == nil {
		d = time.Duration(secs) * time.Second
	} else if at, err := http.ParseTime(v); err == nil {
		d = at.Sub(now)
	}
	if d <= 0 || d > maxRetryAfter {
		return 0
	}
	return d
}

// body is what is posted to t for ev.
func (t *target) body(ev Event) ([]byte, error) {
	if t.kind == KindSlack {
		return json.Marshal(struct {
			Text string `json:"text"`
		}{SlackText(ev)})
	}
	return json.Marshal(ev)
}

// redactErr describes a failed client call without its URL.
func (t *target) redactErr(op string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("%s %s: %s", op, t.label, t.redact(err.Error()))
}

// redact removes every part of t's URL that may hold a secret from s.
func (t *target) redact(s string) string {
	for _, p := range t.secret {
		s = strings.ReplaceAll(s, p, "REDACTED")
	}
	return s
}

// secretParts lists the parts of a URL that may hold a secret (the whole
// URL, user info, path, query, fragment, raw and escaped), longest first so
// that a longer part is removed before a shorter one it contains.
func secretParts(raw string, u *url.URL) []string {
	parts := []string{raw, u.RawQuery, u.Fragment, u.RawFragment, u.Opaque}
	if u.User != nil {
		parts = append(parts, u.User.String(), u.User.Username())
		if p, ok := u.User.Password(); ok {
			// The client sends user info as a Basic Authorization header,
			// which an endpoint may echo back in an error body.
			basic := base64.StdEncoding.EncodeToString([]byte(u.User.Username() + ":" + p))
			parts = append(parts, p, basic)
		}
	}
	// "/" alone is no secret and would mangle every message.
	for _, p := range []string{u.Path, u.RawPath, u.EscapedPath()} {
		if len(p) > 1 {
			parts = append(parts, p)
		}
	}
	var out []string
	for _, p := range parts {
		if p != "" && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out
}
