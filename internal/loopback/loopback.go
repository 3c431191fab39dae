// Package loopback finds free ports on 127.0.0.1 for processes that bind them
// later: the components of a local cluster, the replicas of a local fleet.
//
// A port the kernel handed out for "127.0.0.1:0" lies in its ephemeral range,
// where it may become the local end of an outgoing connection between the
// moment it is found free and the moment its process binds it. Ports are
// therefore chosen below that range, where only an explicit bind takes them.
package loopback

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// floor is the lowest port handed out: below it lie well-known and
// registered services a developer may run.
const floor = 10000

// ephemeralLow returns the first port of the kernel's ephemeral range.
func ephemeralLow() int {
	low := 32768 // Linux's default
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil {
				low = v
			}
		}
	}
	return low
}

// FreeRun returns a port p such that p … p+n-1 are all free on loopback now.
func FreeRun(n int) (int, error) {
	low := ephemeralLow()
	if low-n <= floor {
		return 0, fmt.Errorf("no room for %d ports between %d and the ephemeral range starting at %d", n, floor, low)
	}
	for range 500 {
		p := floor + rand.IntN(low-n-floor)
		if runFree(p, n) {
			return p, nil
		}
	}
	return 0, fmt.Errorf("no %d consecutive free ports between %d and %d", n, floor, low)
}

// FreePorts returns n distinct ports free on loopback now.
func FreePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	seen := map[int]bool{}
	for len(ports) < n {
		p, err := FreeRun(1)
		if err != nil {
			return nil, err
		}
		if !seen[p] {
			seen[p] = true
			ports = append(ports, p)
		}
	}
	return ports, nil
}

func runFree(p, n int) bool {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for i := range n {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p+i)))
		if err != nil {
			return false
		}
		ls = append(ls, l)
	}
	return true
}
