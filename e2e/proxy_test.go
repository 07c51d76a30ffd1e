package e2e

import (
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
)

// switchProxy is a TCP proxy in front of the git server that the test can
// take down and bring back, to play "the git host goes away" without
// changing the address lockstep was configured with.
type switchProxy struct {
	ln     net.Listener
	target string
	down   atomic.Bool
	conns  atomic.Int64 // connections accepted while up
	mu     sync.Mutex
	open   []net.Conn
}

func newSwitchProxy(t *testing.T, targetURL string) *switchProxy {
	t.Helper()
	u, err := url.Parse(targetURL)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &switchProxy{ln: ln, target: u.Host}
	go p.serve()
	t.Cleanup(func() { ln.Close(); p.closeAll() })
	return p
}

// url rewrites the git server's URL to go through the proxy.
func (p *switchProxy) url(gitURL string) string {
	u, _ := url.Parse(gitURL)
	u.Host = p.ln.Addr().String()
	return u.String()
}

func (p *switchProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if p.down.Load() {
			c.Close() // the host is away: connections are dropped at once
			continue
		}
		p.conns.Add(1)
		go p.pipe(c)
	}
}

func (p *switchProxy) pipe(c net.Conn) {
	b, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.open = append(p.open, c, b)
	p.mu.Unlock()
	go func() { io.Copy(b, c); b.Close() }()
	io.Copy(c, b)
	c.Close()
}

// setDown takes the git host away (dropping open connections) or brings it back.
func (p *switchProxy) setDown(down bool) {
	p.down.Store(down)
	if down {
		p.closeAll()
	}
}

func (p *switchProxy) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.open {
		c.Close()
	}
	p.open = nil
}
