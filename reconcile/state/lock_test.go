package state

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/reconcile"
)

// lockPairs are two stores whose apply locks must exclude each other: one
// store used by two goroutines (in memory and on disk), and two stores on
// one dir, which is what two processes sharing a state dir are (an flock
// taken through another open of the file conflicts within one process too).
func lockPairs(t *testing.T) []struct {
	name string
	a, b *Store
} {
	mem := New("", 0, zerolog.Nop())
	disk := New(t.TempDir(), 0, zerolog.Nop())
	dir := t.TempDir()
	return []struct {
		name string
		a, b *Store
	}{
		{"memory", mem, mem},
		{"disk, one store", disk, disk},
		{"disk, two stores", New(dir, 0, zerolog.Nop()), New(dir, 0, zerolog.Nop())},
	}
}

func TestApplyLockSecondWaitsSayingForWhomThenGetsIt(t *testing.T) {
	for _, tt := range lockPairs(t) {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			unlock, err := tt.a.LockApply(ctx, "production", Holder{Command: "lockstep apply production", Pass: "p1"}, time.Second, nil)
			if err != nil {
				t.Fatal(err)
			}
			// Another environment is not held up.
			other, err := tt.b.LockApply(ctx, "staging", Holder{}, 0, nil)
			if err != nil {
				t.Fatalf("the lock of production holds up staging: %v", err)
			}
			other()

			waitedFor := make(chan Holder, 4)
			got := make(chan error, 1)
			go func() {
				unlock2, err := tt.b.LockApply(ctx, "production", Holder{Command: "lockstep agent"}, time.Minute, func(h Holder) { waitedFor <- h })
				if err == nil {
					unlock2()
				}
				got <- err
			}()
			h := <-waitedFor
			if h.PID != os.Getpid() || h.Command != "lockstep apply production" || h.Pass != "p1" || h.Since.IsZero() {
				t.Errorf("the waiter was told it waits for %+v, want this pid, its command, pass and start", h)
			}
			if s := h.String(); s != "pid "+strconv.Itoa(os.Getpid())+" (lockstep apply production)" {
				t.Errorf("holder named %q", s)
			}
			select {
			case err := <-got:
				t.Fatalf("the second took the lock while the first held it: %v", err)
			default:
			}
			unlock()
			if err := <-got; err != nil {
				t.Fatalf("the second did not get the lock once it was released: %v", err)
			}
		})
	}
}

func TestApplyLockGivesUpAfterItsBound(t *testing.T) {
	for _, tt := range lockPairs(t) {
		t.Run(tt.name, func(t *testing.T) {
			unlock, err := tt.a.LockApply(context.Background(), "production", Holder{Command: "lockstep apply"}, 0, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer unlock()
			_, err = tt.b.LockApply(context.Background(), "production", Holder{}, 50*time.Millisecond, nil)
			var be *BusyError
			if !errors.As(err, &be) {
				t.Fatalf("err = %v, want a *BusyError", err)
			}
			if be.Holder.PID != os.Getpid() || be.Waited < 50*time.Millisecond {
				t.Errorf("BusyError %+v: want the holder's pid and a wait of at least the bound", be)
			}
			for _, want := range []string{"another apply of production is still running", "(lockstep apply", "gave up after waiting"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if c := reconcile.Classify(err); c != reconcile.ClassEngine {
				t.Errorf("Classify = %q, want a class the agent retries with backoff", c)
			}
		})
	}
}

func TestApplyLockWaitEndsWithTheContext(t *testing.T) {
	for _, tt := range lockPairs(t) {
		t.Run(tt.name, func(t *testing.T) {
			unlock, err := tt.a.LockApply(context.Background(), "production", Holder{}, 0, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer unlock()
			ctx, cancel := context.WithCancel(context.Background())
			_, err = tt.b.LockApply(ctx, "production", Holder{}, time.Hour, func(Holder) { cancel() })
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v, want context.Canceled", err)
			}
		})
	}
}

func TestApplyLockRefusesABadEnvironmentName(t *testing.T) {
	if _, err := New(t.TempDir(), 0, zerolog.Nop()).LockApply(context.Background(), "../etc", Holder{}, 0, nil); err == nil {
		t.Fatal("a lock outside the state dir was taken")
	}
}

// TestApplyLockHelperProcess is the other process of
// TestApplyLockIsDroppedWhenItsProcessIsKilled: it takes the lock, says
// so, and waits to be killed.
func TestApplyLockHelperProcess(t *testing.T) {
	dir := os.Getenv("LOCKSTEP_TEST_LOCK_DIR")
	if dir == "" {
		t.Skip("helper process only")
	}
	if _, err := New(dir, 0, zerolog.Nop()).LockApply(context.Background(), "production", Holder{}, 0, nil); err != nil {
		os.Exit(3)
	}
	os.Stdout.WriteString("locked\n")
	select {}
}

func TestApplyLockIsDroppedWhenItsProcessIsKilled(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestApplyLockHelperProcess$")
	cmd.Env = append(os.Environ(), "LOCKSTEP_TEST_LOCK_DIR="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	buf := make([]byte, len("locked\n"))
	if _, err := out.Read(buf); err != nil || string(buf) != "locked\n" {
		t.Fatalf("helper did not take the lock: %q, %v", buf, err)
	}
	s := New(dir, 0, zerolog.Nop())
	_, err = s.LockApply(context.Background(), "production", Holder{}, 20*time.Millisecond, nil)
	var be *BusyError
	if !errors.As(err, &be) || be.Holder.PID != cmd.Process.Pid {
		t.Fatalf("while the helper holds it: %v, want a *BusyError naming pid %d", err, cmd.Process.Pid)
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL: no cleanup runs
		t.Fatal(err)
	}
	_ = cmd.Wait()
	unlock, err := s.LockApply(context.Background(), "production", Holder{}, 10*time.Second, nil)
	if err != nil {
		t.Fatalf("the lock of a killed process is still held: %v", err)
	}
	unlock()
	if _, err := os.Stat(filepath.Join(dir, "environments", "production", "apply.lock")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a released lock left its file: %v", err)
	}
}

// Many applies through two stores on one dir (two processes): never two
// inside at once, whatever the interleaving of lock, remove and reopen.
func TestApplyLockExcludesUnderContention(t *testing.T) {
	dir := t.TempDir()
	stores := []*Store{New(dir, 0, zerolog.Nop()), New(dir, 0, zerolog.Nop())}
	var inside atomic.Int32
	var wg sync.WaitGroup
	for g := 0; g < 6; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				unlock, err := stores[g%2].LockApply(context.Background(), "production", Holder{}, time.Minute, nil)
				if err != nil {
					t.Error(err)
					return
				}
				if n := inside.Add(1); n != 1 {
					t.Errorf("%d applies hold the lock at once", n)
				}
				inside.Add(-1)
				unlock()
			}
		}()
	}
	wg.Wait()
}
