package redistest

import (
	"net"
	"sync"
	"testing"
)

// A Proxy forwards TCP connections to a target and can stop forwarding
// without closing anything: to both ends, every connection through it
// becomes half-open, as behind a crashed host or a dead firewall.
type Proxy struct {
	l      net.Listener
	target string

	mu      sync.Mutex
	resumed chan struct{} // closed while forwarding; replaced by Pause
	conns   map[net.Conn]bool
	closed  bool
	wg      sync.WaitGroup
}

// StartProxy starts a proxy on a free port of 127.0.0.1 that forwards to
// target. It is closed when t ends.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("redistest: proxy: %v", err)
	}
	p := &Proxy{l: l, target: target, resumed: make(chan struct{}), conns: map[net.Conn]bool{}}
	close(p.resumed)
	p.wg.Go(p.accept)
	t.Cleanup(p.close)
	return p
}

// Addr returns the proxy's host:port.
func (p *Proxy) Addr() string { return p.l.Addr().String() }

// URL returns the proxy's redis:// URL.
func (p *Proxy) URL() string { return "redis://" + p.Addr() }

// Pause stops forwarding: bytes are read and held, nothing is sent on and
// nothing is closed. New connections are accepted but not connected on.
func (p *Proxy) Pause() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.resumed:
		p.resumed = make(chan struct{})
	default:
	}
}

// Resume forwards again, starting with the bytes held.
func (p *Proxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.resumed:
	default:
		close(p.resumed)
	}
}

// gate returns a channel that is closed while the proxy forwards.
func (p *Proxy) gate() chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.resumed
}

// track records c, or returns false when the proxy is closed.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = true
	return true
}

func (p *Proxy) accept() {
	for {
		client, err := p.l.Accept()
		if err != nil {
			return
		}
		if !p.track(client) {
			client.Close()
			return
		}
		p.wg.Go(func() { p.serve(client) })
	}
}

// serve connects client to the target once forwarding is on, then copies
// both ways.
func (p *Proxy) serve(client net.Conn) {
	defer client.Close()
	if !p.wait() {
		return
	}
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer server.Close()
	if !p.track(server) {
		return
	}
	done := make(chan struct{}, 2)
	copyGated := func(dst, src net.Conn) {
		defer func() { done <- struct{}{} }()
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				if !p.wait() {
					return
				}
				if _, err := dst.Write(buf[:n]); err != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	go copyGated(server, client)
	go copyGated(client, server)
	<-done
	// One direction ended: end both (the deferred closes unblock the other).
	client.Close()
	server.Close()
	<-done
}

// wait blocks while the proxy is paused; it returns false when the proxy
// was closed.
func (p *Proxy) wait() bool {
	for {
		g := p.gate()
		<-g
		p.mu.Lock()
		closed, same := p.closed, g == p.resumed
		p.mu.Unlock()
		if closed {
			return false
		}
		if same {
			return true
		}
	}
}

// close stops the proxy and closes every connection.
func (p *Proxy) close() {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	select {
	case <-p.resumed:
	default:
		close(p.resumed)
	}
	p.mu.Unlock()
	p.l.Close()
	p.wg.Wait()
}
