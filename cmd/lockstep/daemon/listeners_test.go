package daemon

import (
	"errors"
	"net"
	"testing"
	"time"
)

// A reload hands the bound listener to the next generation: once the old
// generation's view is closed, connections go to the new view, and the
// address was never unbound in between.
func TestHandoffKeepsTheAddressAcrossGenerations(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := newHandoff(ln)
	defer h.close()
	old := h.view()
	accepted := make(chan error, 1)
	go func() {
		c, err := old.Accept()
		if err == nil {
			c.Close()
		}
		accepted <- err
	}()
	dial(t, ln.Addr().String())
	if err := <-accepted; err != nil {
		t.Fatalf("old generation's accept: %v", err)
	}

	next := h.view()
	old.Close()
	if _, err := old.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("accept on a closed view: %v, want net.ErrClosed", err)
	}
	go func() {
		c, err := next.Accept()
		if err == nil {
			c.Close()
		}
		accepted <- err
	}()
	dial(t, ln.Addr().String())
	select {
	case err := <-accepted:
		if err != nil {
			t.Fatalf("new generation's accept: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the new generation got no connection within 10s")
	}

	h.close()
	if _, err := next.Accept(); err == nil {
		t.Fatal("accept after the listener was unbound succeeded")
	}
}

func dial(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	c.Close()
}

// bind reuses a listener whose key is unchanged and binds one that is new.
func TestBindReusesUnchangedAddresses(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	old := listeners{"api tcp x": newHandoff(ln)}
	defer old["api tcp x"].close()
	fresh := listeners{}
	calls := 0
	listen := func() (net.Listener, error) { calls++; return net.Listen("tcp", "127.0.0.1:0") }
	if _, err := old.bind("api tcp x", fresh, listen); err != nil || calls != 0 || fresh["api tcp x"] != old["api tcp x"] {
		t.Fatalf("unchanged address: err %v, listen called %d times", err, calls)
	}
	if _, err := old.bind("webhook tcp y", fresh, listen); err != nil || calls != 1 || fresh["webhook tcp y"] == nil {
		t.Fatalf("new address: err %v, listen called %d times", err, calls)
	}
	fresh["webhook tcp y"].close()
}
