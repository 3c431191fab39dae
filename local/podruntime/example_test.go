package podruntime_test

import (
	"context"
	"fmt"

	"github.com/go-logr/logr"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/sluice-dev/sluice/local/podruntime"
)

// The e2e suite runs one Runtime next to the local cluster, with a clientset
// for that cluster's kube-apiserver; a fake clientset stands in here.
func ExampleRuntime() {
	client := fake.NewClientset()
	rt := podruntime.New(client, podruntime.Options{Log: logr.Discard()})

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()

	// ... create Deployments; kwok makes their pods Running on 127.x IPs ...
	for _, e := range rt.Serving() {
		fmt.Println(e.Namespace, e.Pod, e.IP, e.Port, e.Version)
	}

	cancel() // closes every listener
	if err := <-done; err != nil {
		fmt.Println("pod runtime:", err)
	}
}
