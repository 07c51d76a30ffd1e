package api

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

// SocketMode is the mode of the API socket: the owner (root, running the
// agent) and the socket's group may talk to the agent, nobody else. Sync
// requests make the agent act, so the socket is not world-writable.
const SocketMode fs.FileMode = 0o660

// maxSocketPath is the longest unix socket path Linux accepts (sun_path is
// 108 bytes including the terminating NUL); longer paths fail with a bare
// "invalid argument", so they are refused with a clear message first.
const maxSocketPath = 107

// probeTimeout bounds the connection attempt that tells a live socket from
// a stale one.
const probeTimeout = 2 * time.Second

// ListenUnix creates the API socket at path and listens on it. It creates
// the parent directory (mode 0755) if missing, and removes an existing
// socket file first only if nothing answers on it (a stale socket left by
// a killed agent); a socket something answers on, or a path that is not a
// socket, is an error. The socket is made mode 0660.
//
// The socket exists with the process umask's mode for the instant between
// bind and chmod; with the usual umask 022 (systemd's default) that mode
// grants nobody but the owner the write permission connecting needs.
func ListenUnix(ctx context.Context, path string) (net.Listener, error) {
	if path == "" {
		return nil, errors.New("api: no socket path ([api].socket)")
	}
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("api: socket path %s ([api].socket) is %d bytes long, longer than the %d a unix socket allows: choose a shorter path", path, len(path), maxSocketPath)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("api: create the directory of socket %s ([api].socket): %w", path, err)
	}
	if err := removeStaleSocket(ctx, path); err != nil {
		return nil, err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("api: listen on socket %s ([api].socket): %w", path, err)
	}
	if err := os.Chmod(path, SocketMode); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("api: chmod socket %s: %w", path, err)
	}
	return ln, nil
}

// removeStaleSocket removes path if it is a socket nothing answers on.
func removeStaleSocket(ctx context.Context, path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("api: socket %s ([api].socket): %w", path, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("api: %s ([api].socket) exists and is not a socket: remove it or choose another path", path)
	}
	d := net.Dialer{Timeout: probeTimeout}
	conn, err := d.DialContext(ctx, "unix", path)
	if err == nil {
		_ = conn.Close()
		return fmt.Errorf("api: something already answers on socket %s ([api].socket): is another lockstep agent running? (systemctl status lockstep)", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		// Anything but "refused" (a timeout, a permission error) does not
		// prove the socket is dead: leave it alone.
		return fmt.Errorf("api: probe existing socket %s ([api].socket): %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("api: remove stale socket %s: %w", path, err)
	}
	return nil
}

// ListenTCP listens on the TCP address addr ([api].listen). The API has no
// authentication of its own, so an address that is not loopback is logged
// as a warning: anyone who reaches it can read the status and queue passes.
func ListenTCP(ctx context.Context, addr string, log zerolog.Logger) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("api: listen on %s ([api].listen): %w", addr, err)
	}
	if a, ok := ln.Addr().(*net.TCPAddr); ok && !a.IP.IsLoopback() {
		log.Warn().Str("listen", addr).Msg("the API listens beyond loopback and has no authentication: bind [api].listen to 127.0.0.1 or firewall it")
	}
	return ln, nil
}
