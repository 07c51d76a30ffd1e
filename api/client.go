package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lockstep-gitops/lockstep/config"
	"github.com/lockstep-gitops/lockstep/reconcile"
)

// DefaultClientTimeout is the deadline of a request whose context has
// none: every answer of the API is immediate (sync only queues), so a
// client waiting longer is talking to a wedged agent.
const DefaultClientTimeout = 30 * time.Second

// maxResponseBody bounds what the client reads of an answer: a history of
// MaxHistoryLimit passes fits with a wide margin.
const maxResponseBody = 64 << 20

// Client talks to a running agent's API. It is what the CLI uses.
type Client struct {
	endpoint string // the socket path or TCP address, for messages
	base     string // URL prefix of every request
	http     *http.Client
}

// NewClient returns a client for the agent listening on the unix socket
// path socket, or, when socket is empty, on the TCP address addr
// (host:port). With both empty it uses the default socket.
func NewClient(socket, addr string) *Client {
	if socket == "" && addr == "" {
		socket = config.DefaultSocket
	}
	if socket != "" {
		var d net.Dialer
		return &Client{
			endpoint: socket,
			// The host is never resolved: every connection goes to the
			// socket.
			base: "http://lockstep",
			http: &http.Client{Transport: &http.Transport{
				DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
					return d.DialContext(ctx, "unix", socket)
				},
				DisableCompression: true,
			}},
		}
	}
	return &Client{
		endpoint: addr,
		base:     "http://" + addr,
		http:     &http.Client{Transport: &http.Transport{Proxy: nil}},
	}
}

// NotRunningError is returned when no agent answers: the socket file does
// not exist, or nothing listens on it or on the TCP address.
type NotRunningError struct {
	Endpoint string // socket path or TCP address
	Err      error
}

func (e *NotRunningError) Error() string {
	return fmt.Sprintf("no lockstep agent is listening on %s: is the lockstep service running? (systemctl status lockstep)", e.Endpoint)
}

func (e *NotRunningError) Unwrap() error { return e.Err }

// ServerError is an error answer of the agent, carrying its message.
type ServerError struct {
	StatusCode int
	Message    string
}

func (e *ServerError) Error() string {
	return fmt.Sprintf("lockstep agent: %s (HTTP %d)", e.Message, e.StatusCode)
}

// NotFound reports whether the agent answered 404 (an unknown
// environment), so callers can use the same NotFound test on both sides.
func (e *ServerError) NotFound() bool { return e.StatusCode == http.StatusNotFound }

// Conflict reports whether the agent answered 409 (nothing to roll back to).
func (e *ServerError) Conflict() bool { return e.StatusCode == http.StatusConflict }

// Status returns what the agent knows of every environment.
func (c *Client) Status(ctx context.Context) ([]reconcile.EnvStatus, error) {
	resp, err := c.StatusResponse(ctx)
	return resp.Environments, err
}

// StatusResponse is the whole answer of GET /v1/status: the environments
// and what the agent says of itself (a refused reload).
func (c *Client) StatusResponse(ctx context.Context) (StatusResponse, error) {
	var resp StatusResponse
	if err := c.do(ctx, http.MethodGet, "/v1/status", nil, &resp); err != nil {
		return StatusResponse{}, fmt.Errorf("status: %w", err)
	}
	return resp, nil
}

// History returns up to limit passes of env, newest first. limit <= 0
// means the server's default (DefaultHistoryLimit).
func (c *Client) History(ctx context.Context, env string, limit int) ([]reconcile.PassRecord, error) {
	q := url.Values{"env": {env}}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var resp HistoryResponse
	if err := c.do(ctx, http.MethodGet, "/v1/history?"+q.Encode(), nil, &resp); err != nil {
		return nil, fmt.Errorf("history of %s: %w", env, err)
	}
	return resp.Passes, nil
}

// Sync asks the agent to run a pass of env now (of every environment when
// env is empty) and returns the environments queued. It does not wait for
// the passes.
func (c *Client) Sync(ctx context.Context, env string) ([]string, error) {
	path := "/v1/sync"
	if env != "" {
		path += "?" + url.Values{"env": {env}}.Encode()
	}
	var resp SyncResponse
	if err := c.do(ctx, http.MethodPost, path, nil, &resp); err != nil {
		if env == "" {
			return nil, fmt.Errorf("sync: %w", err)
		}
		return nil, fmt.Errorf("sync %s: %w", env, err)
	}
	return resp.Queued, nil
}

// Retry asks the agent to clear env's quarantined commits and run a pass:
// the pinned commit is tried again.
func (c *Client) Retry(ctx context.Context, env string) error {
	var resp QueuedResponse
	if err := c.do(ctx, http.MethodPost, "/v1/retry?"+url.Values{"env": {env}}.Encode(), nil, &resp); err != nil {
		return fmt.Errorf("retry %s: %w", env, err)
	}
	return nil
}

// Rollback asks the agent to apply env's last healthy revision again now
// and hold the pinned commit back until the pin changes. It does not wait
// for the rollback. An agent with nothing to roll back to answers 409
// (a *ServerError whose Conflict reports true).
func (c *Client) Rollback(ctx context.Context, env string) error {
	var resp QueuedResponse
	if err := c.do(ctx, http.MethodPost, "/v1/rollback?"+url.Values{"env": {env}}.Encode(), nil, &resp); err != nil {
		return fmt.Errorf("rollback %s: %w", env, err)
	}
	return nil
}

func (c *Client) do(ctx context.Context, method, path string, body io.Reader, out any) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultClientTimeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return fmt.Errorf("build request for %s: %w", c.endpoint, err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return c.transportError(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	if err != nil {
		return fmt.Errorf("read the answer of %s: %w", c.endpoint, err)
	}
	if resp.StatusCode >= 300 {
		var e ErrorResponse
		msg := strings.TrimSpace(string(data))
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		if msg == "" {
			msg = http.StatusText(resp.StatusCode)
		}
		return &ServerError{StatusCode: resp.StatusCode, Message: msg}
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decode the answer of %s to %s %s: %w", c.endpoint, method, path, err)
	}
	return nil
}

// transportError tells "no agent" and "not allowed" apart from other
// failures, since each needs a different fix.
func (c *Client) transportError(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		switch {
		case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, fs.ErrNotExist):
			return &NotRunningError{Endpoint: c.endpoint, Err: err}
		case errors.Is(err, fs.ErrPermission):
			return fmt.Errorf("not allowed to connect to the lockstep agent on %s: run as root or as a member of the socket's group: %w", c.endpoint, err)
		}
	}
	return fmt.Errorf("talk to the lockstep agent on %s: %w", c.endpoint, err)
}
