package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Holder is who holds an environment's apply lock, as written inside the
// lock file so that whoever waits can say what it waits for.
type Holder struct {
	PID     int       `json:"pid"`
	Command string    `json:"command"` // the holder's command line ("lockstep apply production")
	Pass    string    `json:"pass,omitempty"`
	Since   time.Time `json:"since"`
}

// String names the holder for people: "pid 1234 (lockstep apply)", or
// "another lockstep process" when the lock file does not say.
func (h Holder) String() string {
	if h.PID == 0 {
		return "another lockstep process"
	}
	s := fmt.Sprintf("pid %d", h.PID)
	if h.Command != "" {
		s += " (" + h.Command + ")"
	}
	return s
}

// BusyError is LockApply's answer when the environment's apply lock was
// still held when the wait ran out. It is transient (Classify counts it
// with the engine's failures: retried with backoff).
type BusyError struct {
	Environment string
	Holder      Holder // zero when the lock file did not say
	Waited      time.Duration
}

func (e *BusyError) Error() string {
	since := ""
	if !e.Holder.Since.IsZero() {
		since = ", started " + e.Holder.Since.UTC().Format(time.RFC3339)
	}
	return fmt.Sprintf("another apply of %s is still running: %s%s; gave up after waiting %s: try again when it has finished",
		e.Environment, e.Holder, since, e.Waited.Round(time.Millisecond))
}

// envLock is the in-process half of an environment's apply lock: the
// file lock alone would make goroutines of one process poll, and a store
// in memory has no file.
type envLock struct {
	sem    chan struct{} // capacity 1
	holder Holder        // guarded by Store.mu
}

// lockPollMax caps the interval at which a waiter tries the file lock.
const lockPollMax = 250 * time.Millisecond

// LockApply takes env's apply lock, which every pass that changes the
// host or env's records holds (the agent's and the CLI's alike), waiting
// up to wait for whoever holds it. waiting, when not nil, is called with
// the holder when the pass has to wait, and again if the holder changes.
// who says which pass takes it (its PID, Command and Since are filled in
// when zero). The lock is <dir>/environments/<env>/apply.lock, an
// flock(2): the kernel drops it when the process dies, so a kill -9 never
// leaves it stale. The returned func releases it.
func (s *Store) LockApply(ctx context.Context, env string, who Holder, wait time.Duration, waiting func(Holder)) (func(), error) {
	if err := CheckEnvironment(env); err != nil {
		return nil, err
	}
	who = fillHolder(who)
	start := time.Now()
	deadline := start.Add(wait)
	w := &waiter{env: env, start: start, notify: waiting}
	l := s.envLock(env)
	if err := s.lockInProcess(ctx, l, deadline, w); err != nil {
		return nil, err
	}
	release := func() {}
	if s.dir != "" {
		var err error
		release, err = s.lockFile(ctx, env, who, deadline, w)
		if err != nil {
			<-l.sem
			return nil, err
		}
	}
	s.mu.Lock()
	l.holder = who
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		l.holder = Holder{}
		s.mu.Unlock()
		release()
		<-l.sem
	}, nil
}

// fillHolder completes who with this process.
func fillHolder(who Holder) Holder {
	if who.PID == 0 {
		who.PID = os.Getpid()
	}
	if who.Command == "" {
		who.Command = commandLine(os.Args)
	}
	if who.Since.IsZero() {
		who.Since = time.Now().UTC()
	}
	return who
}

// commandLine is how a process is named in the lock file: its program's
// base name and arguments, as ps shows them (lockstep takes no secret on
// its command line), cut to a readable length.
func commandLine(args []string) string {
	if len(args) == 0 {
		return ""
	}
	s := strings.Join(append([]string{filepath.Base(args[0])}, args[1:]...), " ")
	if len(s) > 120 {
		s = s[:117] + "..."
	}
	return s
}

func (s *Store) envLock(env string) *envLock {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.locks == nil {
		s.locks = map[string]*envLock{}
	}
	l := s.locks[env]
	if l == nil {
		l = &envLock{sem: make(chan struct{}, 1)}
		s.locks[env] = l
	}
	return l
}

// waiter says, once per holder, what a pass waits for, and builds the
// error when the wait runs out.
type waiter struct {
	env    string
	start  time.Time
	notify func(Holder)
	last   Holder
	told   bool
	blank  int // reads of a lock file that named no holder
}

func (w *waiter) holder(h Holder) {
	if w.told && h == w.last {
		return
	}
	if h.PID == 0 && !w.told && w.blank < 1 {
		// Most likely read between the holder's lock and its write of
		// who it is: the next poll names it.
		w.blank++
		return
	}
	w.told, w.last = true, h
	if w.notify != nil {
		w.notify(h)
	}
}

func (w *waiter) busy() error {
	return &BusyError{Environment: w.env, Holder: w.last, Waited: time.Since(w.start)}
}

func (w *waiter) cancelled(ctx context.Context) error {
	return fmt.Errorf("wait for the apply of %s by %s: %w", w.env, w.last, ctx.Err())
}

// lockInProcess takes l's semaphore, waiting until deadline.
func (s *Store) lockInProcess(ctx context.Context, l *envLock, deadline time.Time, w *waiter) error {
	select {
	case l.sem <- struct{}{}:
		return nil
	default:
	}
	s.mu.Lock()
	h := l.holder
	s.mu.Unlock()
	w.holder(h)
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case l.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return w.cancelled(ctx)
	case <-timer.C:
		return w.busy()
	}
}

// lockFile takes the flock on env's apply.lock, waiting until deadline,
// and writes who into it. A released lock's file is removed, so a state
// dir at rest holds only records; a waiter that locked a file removed
// meanwhile opens the new one and tries again.
func (s *Store) lockFile(ctx context.Context, env string, who Holder, deadline time.Time, w *waiter) (func(), error) {
	p := filepath.Join(s.dir, path(env, "apply.lock"))
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
		return nil, fmt.Errorf("apply lock of %s: %w", env, err)
	}
	poll := 10 * time.Millisecond
	for {
		f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("apply lock of %s: %w", env, err)
		}
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		switch {
		case err == nil && samePath(f, p):
			// Who holds it is only for the messages of whoever waits: a
			// write that fails costs the wording, not the lock.
			if b, err := json.Marshal(who); err == nil {
				_, _ = f.WriteAt(append(b, '\n'), 0)
			}
			return func() {
				_ = os.Remove(p) // before the close: whoever locks next finds it gone
				_ = f.Close()    // closing releases the flock
			}, nil
		case err == nil:
			f.Close() // locked a file its holder removed on release
			continue
		case !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR):
			f.Close()
			return nil, fmt.Errorf("apply lock %s: %w", p, err)
		}
		f.Close()
		w.holder(readHolder(p))
		left := time.Until(deadline)
		if left <= 0 {
			return nil, w.busy()
		}
		select {
		case <-ctx.Done():
			return nil, w.cancelled(ctx)
		case <-time.After(min(poll, left)):
		}
		poll = min(2*poll, lockPollMax)
	}
}

// samePath reports whether f is still the file at p.
func samePath(f *os.File, p string) bool {
	a, err := f.Stat()
	if err != nil {
		return false
	}
	b, err := os.Stat(p)
	return err == nil && os.SameFile(a, b)
}

// readHolder reads who holds the lock at p; the zero Holder when the file
// does not say (being written, or left empty).
func readHolder(p string) Holder {
	var h Holder
	b, err := os.ReadFile(p)
	if err != nil || json.Unmarshal(b, &h) != nil {
		return Holder{}
	}
	return h
}
