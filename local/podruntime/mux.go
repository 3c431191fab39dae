package podruntime

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"sync"
	"time"
)

// http2Preface is how every prior-knowledge HTTP/2 client, gRPC included,
// opens a connection (RFC 9113 §3.4). No HTTP/1.x request starts with it.
var http2Preface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")

// sniffTimeout bounds how long a new connection may stay silent before the
// runtime gives up on telling its protocol.
const sniffTimeout = 10 * time.Second

// protocolSplit accepts connections on one listener and hands each to the
// gRPC or the HTTP/1.1 side, by whether it opens with the HTTP/2 preface.
// gRPC gets grpc-go's own transport this way, several times cheaper per call
// than grpc.Server.ServeHTTP behind net/http's HTTP/2 server.
type protocolSplit struct {
	ln    net.Listener
	grpc  *connQueue
	http1 *connQueue

	mu       sync.Mutex
	closed   bool
	sniffing map[net.Conn]struct{}
	done     chan struct{} // closed when the accept loop returned
}

func newProtocolSplit(ln net.Listener) *protocolSplit {
	p := &protocolSplit{
		ln:       ln,
		grpc:     newConnQueue(ln.Addr()),
		http1:    newConnQueue(ln.Addr()),
		sniffing: map[net.Conn]struct{}{},
		done:     make(chan struct{}),
	}
	go p.accept()
	return p
}

// accept runs until the listener closes.
func (p *protocolSplit) accept() {
	defer close(p.done)
	for {
		conn, err := p.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			conn.Close()
			return
		}
		p.sniffing[conn] = struct{}{}
		p.mu.Unlock()
		go p.route(conn)
	}
}

// route reads just enough of conn to tell HTTP/2 from HTTP/1.x and queues it
// for that side; the bytes read are replayed to the server.
func (p *protocolSplit) route(conn net.Conn) {
	defer func() {
		p.mu.Lock()
		delete(p.sniffing, conn)
		p.mu.Unlock()
	}()
	r := bufio.NewReaderSize(conn, len(http2Preface))
	isHTTP2, err := opensWith(r, conn, http2Preface)
	if err != nil {
		conn.Close()
		return
	}
	wrapped := &replayConn{Conn: conn, r: r}
	if isHTTP2 {
		p.grpc.push(wrapped)
	} else {
		p.http1.push(wrapped)
	}
}

// opensWith reports whether the first bytes of r are prefix, reading only
// until they differ, so a short HTTP/1.x request is routed without waiting
// for more bytes than it sends.
func opensWith(r *bufio.Reader, conn net.Conn, prefix []byte) (bool, error) {
	if err := conn.SetReadDeadline(time.Now().Add(sniffTimeout)); err != nil {
		return false, err
	}
	for n := 1; n <= len(prefix); n++ {
		got, err := r.Peek(n)
		if err != nil {
			return false, err
		}
		if !bytes.Equal(got, prefix[:n]) {
			break
		}
		if n == len(prefix) {
			return true, conn.SetReadDeadline(time.Time{})
		}
	}
	return false, conn.SetReadDeadline(time.Time{})
}

// close stops accepting, closes connections still being sniffed and both
// queues. It returns the listener's Close error.
func (p *protocolSplit) close() error {
	err := p.ln.Close()
	<-p.done
	p.mu.Lock()
	p.closed = true
	for conn := range p.sniffing {
		conn.Close()
	}
	p.mu.Unlock()
	p.grpc.Close()
	p.http1.Close()
	return err
}

// replayConn is a connection whose first bytes were read by the sniffer.
type replayConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *replayConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// connQueue is a net.Listener fed with connections by protocolSplit.
type connQueue struct {
	addr   net.Addr
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newConnQueue(addr net.Addr) *connQueue {
	return &connQueue{addr: addr, conns: make(chan net.Conn), closed: make(chan struct{})}
}

// push hands conn to the server, or closes it when the queue is closed.
func (q *connQueue) push(conn net.Conn) {
	select {
	case q.conns <- conn:
	case <-q.closed:
		conn.Close()
	}
}

// Accept returns the next routed connection, or net.ErrClosed.
func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.conns:
		return c, nil
	case <-q.closed:
		return nil, net.ErrClosed
	}
}

// Close makes Accept return net.ErrClosed; it may be called more than once.
func (q *connQueue) Close() error {
	q.once.Do(func() { close(q.closed) })
	return nil
}

// Addr is the address of the underlying listener.
func (q *connQueue) Addr() net.Addr { return q.addr }
