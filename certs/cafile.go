package certs

import (
	"context"
	"fmt"
	"os"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// WriteCAFile writes the trust bundle of the certificate Secret
// namespace/name (its ca.crt) to path, for clients that verify the serving
// certificate with a file, such as a grpc-go xDS bootstrap.
func WriteCAFile(ctx context.Context, cs kubernetes.Interface, namespace, name, path string) error {
	sec, err := cs.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("read certificate secret %s/%s: %w", namespace, name, err)
	}
	ca := sec.Data[SecretKeyCACert]
	if len(ca) == 0 {
		return fmt.Errorf("certificate secret %s/%s holds no %s", namespace, name, SecretKeyCACert)
	}
	if err := os.WriteFile(path, ca, 0o644); err != nil {
		return fmt.Errorf("write CA file: %w", err)
	}
	return nil
}
