package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"github.com/go-logr/logr"

	"github.com/sluice-dev/sluice/local/cluster"
)

// logToFile sends the process log to <dir>.log, next to the cluster's
// directory (which the cluster empties when it starts), and returns its
// path and a function restoring stderr. Each start begins a new file.
func logToFile(dir string) (string, func(), error) {
	path := filepath.Clean(dir) + ".log"
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", nil, fmt.Errorf("log directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return "", nil, fmt.Errorf("open log file: %w", err)
	}
	logOutput = f
	return path, func() {
		logOutput = os.Stderr
		if err := f.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "sluice: close log file:", err)
		}
	}, nil
}

// startDevDashboard serves the dashboard for the local cluster's admin on
// 127.0.0.1:port until ctx ends and returns its URL.
func startDevDashboard(ctx context.Context, c *cluster.Cluster, port int, log logr.Logger) (string, error) {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return "", fmt.Errorf("dashboard listener (--dashboard-port): %w", err)
	}
	go func() {
		if err := serveDashboard(ctx, c.RESTConfig(), nil, l, log); err != nil {
			log.Error(err, "dashboard stopped")
		}
	}()
	return "http://" + l.Addr().String() + "/", nil
}
