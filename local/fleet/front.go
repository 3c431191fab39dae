package fleet

import (
	"errors"
	"io"
	"net"
	"sync"
)

// Front is one loopback address in front of several backends, as a
// Kubernetes Service is in front of a Deployment's pods: each connection is
// spliced to the next backend (round robin) that accepts it, so a client
// whose backend died reconnects to one that lives.
type Front struct {
	l        net.Listener
	backends []string

	mu    sync.Mutex
	next  int
	conns map[string]map[net.Conn]struct{} // backend → client connections
	wg    sync.WaitGroup
}

// NewFront listens on a free loopback port in front of backends.
func NewFront(backends []string) (*Front, error) {
	if len(backends) == 0 {
		return nil, errors.New("a front needs at least one backend")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f := &Front{l: l, backends: backends, conns: map[string]map[net.Conn]struct{}{}}
	f.wg.Add(1)
	go f.serve()
	return f, nil
}

// Addr is the front's address.
func (f *Front) Addr() string { return f.l.Addr().String() }

// Connections returns how many client connections are spliced to backend now.
func (f *Front) Connections(backend string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.conns[backend])
}

// Close stops accepting and closes every connection.
func (f *Front) Close() {
	f.l.Close()
	f.mu.Lock()
	for _, cs := range f.conns {
		for c := range cs {
			c.Close()
		}
	}
	f.mu.Unlock()
	f.wg.Wait()
}

func (f *Front) serve() {
	defer f.wg.Done()
	for {
		c, err := f.l.Accept()
		if err != nil {
			return
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.splice(c)
		}()
	}
}

// splice connects c to the first backend, from the next in turn, that
// accepts a connection; c is closed when none does.
func (f *Front) splice(c net.Conn) {
	defer c.Close()
	f.mu.Lock()
	start := f.next
	f.next = (f.next + 1) % len(f.backends)
	f.mu.Unlock()
	for i := range f.backends {
		backend := f.backends[(start+i)%len(f.backends)]
		b, err := net.Dial("tcp", backend)
		if err != nil {
			continue
		}
		f.track(backend, c, true)
		pipe(c, b)
		f.track(backend, c, false)
		return
	}
}

func (f *Front) track(backend string, c net.Conn, open bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !open {
		delete(f.conns[backend], c)
		return
	}
	if f.conns[backend] == nil {
		f.conns[backend] = map[net.Conn]struct{}{}
	}
	f.conns[backend][c] = struct{}{}
}

// pipe copies both ways until either side ends, then closes both.
func pipe(a, b net.Conn) {
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		// Either side ending, cleanly or not, ends the splice.
		io.Copy(dst, src)
		done <- struct{}{}
	}
	go cp(a, b)
	go cp(b, a)
	<-done
	a.Close()
	b.Close()
	<-done
}
