package cluster

import (
	"fmt"
	"syscall"
)

// Signal sends sig to the process's group (e.g. SIGSTOP to pause it).
func (p *Process) Signal(sig syscall.Signal) error {
	if err := syscall.Kill(-p.cmd.Process.Pid, sig); err != nil {
		return fmt.Errorf("signal %s: %w", p.name, err)
	}
	return nil
}

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Component returns the cluster's process of a component (etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler, kwok), or nil.
func (c *Cluster) Component(name string) *Process {
	for _, p := range c.procs {
		if p.name == name {
			return p
		}
	}
	return nil
}
