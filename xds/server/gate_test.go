package server

import (
	"context"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// TestStreamsWaitForTheFirstPublication: a proxy that connects to a replica
// before it published anything (a fresh or restarted replica) is answered
// only with the complete configuration, never with an empty one.
func TestStreamsWaitForTheFirstPublication(t *testing.T) {
	s, addr := testServer(t, Options{})
	if s.Published() {
		t.Fatal("a new server says it has published")
	}
	c := newSotw(t, addr, "early")
	// A wildcard subscription: an empty cache would answer it at once with
	// no listeners, which a proxy takes as "delete everything".
	c.request(resource.ListenerType, nil, nil, "")
	got := make(chan int, 1)
	go func() { got <- len(c.recv().GetResources()) }()
	select {
	case n := <-got:
		t.Fatalf("answered with %d listeners before the first publication", n)
	default:
	}
	if err := s.Update(context.Background(), twoServices(t)); err != nil {
		t.Fatal(err)
	}
	if n := <-got; n != 2 {
		t.Fatalf("first answer carries %d listeners, want both services'", n)
	}
	if !s.Published() {
		t.Fatal("Published() is false after an Update")
	}
}
