package daemon

import (
	"context"
	"net"
	"sync"

	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/api"
)

// handoff owns one bound listener across generations: a reload binds
// nothing twice, and the new generation serves on the same socket the old
// one did, so an address that is unchanged is never unbound, not even for
// an instant. One goroutine accepts and hands each connection to whichever
// generation's view is current.
type handoff struct {
	ln    net.Listener
	conns chan net.Conn
	once  sync.Once
	err   error // Accept's error, once conns is closed
}

func newHandoff(ln net.Listener) *handoff {
	h := &handoff{ln: ln, conns: make(chan net.Conn)}
	go func() {
		defer close(h.conns)
		for {
			c, err := ln.Accept()
			if err != nil {
				h.err = err
				return
			}
			h.conns <- c
		}
	}()
	return h
}

// view is one generation's listener: closing it stops that generation's
// server only; the bound socket stays for the next.
func (h *handoff) view() net.Listener { return &view{h: h, done: make(chan struct{})} }

// close unbinds the listener for good (a unix socket's file is removed).
func (h *handoff) close() { h.once.Do(func() { _ = h.ln.Close() }) }

type view struct {
	h    *handoff
	done chan struct{}
	once sync.Once
}

func (v *view) Accept() (net.Conn, error) {
	select {
	case c, ok := <-v.h.conns:
		if !ok {
			return nil, v.h.err
		}
		return c, nil
	case <-v.done:
		return nil, net.ErrClosed
	}
}

func (v *view) Close() error   { v.once.Do(func() { close(v.done) }); return nil }
func (v *view) Addr() net.Addr { return v.h.ln.Addr() }

// listeners are the bound listeners of the running generation, by what
// they serve and their address ("api unix /run/lockstep/lockstep.sock").
type listeners map[string]*handoff

// bind returns the listener for key: the running one when the address is
// unchanged, else a new one bound by listen. New ones are recorded in
// fresh, for the caller to keep or close.
func (ls listeners) bind(key string, fresh listeners, listen func() (net.Listener, error)) (net.Listener, error) {
	if h, ok := ls[key]; ok {
		fresh[key] = h
		return h.view(), nil
	}
	ln, err := listen()
	if err != nil {
		return nil, err
	}
	h := newHandoff(ln)
	fresh[key] = h
	return h.view(), nil
}

// bindAPI binds (or takes over) the local API's socket and TCP listener.
func bindAPI(ctx context.Context, old, fresh listeners, socket, tcp string, log zerolog.Logger) ([]net.Listener, error) {
	var out []net.Listener
	if socket != "" {
		ln, err := old.bind("api unix "+socket, fresh, func() (net.Listener, error) { return api.ListenUnix(ctx, socket) })
		if err != nil {
			return nil, err
		}
		out = append(out, ln)
	}
	if tcp != "" {
		ln, err := old.bind("api tcp "+tcp, fresh, func() (net.Listener, error) { return api.ListenTCP(ctx, tcp, log) })
		if err != nil {
			return nil, err
		}
		out = append(out, ln)
	}
	return out, nil
}
