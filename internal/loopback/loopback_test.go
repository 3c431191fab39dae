package loopback

import (
	"net"
	"strconv"
	"testing"
)

func TestFreeRunIsFreeAndBelowTheEphemeralRange(t *testing.T) {
	low := ephemeralLow()
	for range 20 {
		p, err := FreeRun(3)
		if err != nil {
			t.Fatal(err)
		}
		if p < floor || p+3 > low {
			t.Fatalf("run %d…%d is outside [%d, %d)", p, p+2, floor, low)
		}
		for i := range 3 {
			l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p+i)))
			if err != nil {
				t.Fatalf("port %d of the run is not free: %v", p+i, err)
			}
			l.Close()
		}
	}
}

func TestFreeRunSkipsABoundPort(t *testing.T) {
	// Hold every port but one of a small window: FreePorts must not return
	// a held one.
	held := map[int]bool{}
	for range 50 {
		p, err := FreeRun(1)
		if err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		defer l.Close()
		held[p] = true
	}
	ports, err := FreePorts(50)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ports {
		if held[p] {
			t.Fatalf("FreePorts returned port %d, which is bound", p)
		}
	}
}
