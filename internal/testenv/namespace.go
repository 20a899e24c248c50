package testenv

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// CreateNamespace creates a namespace named generateName plus a random
// suffix and returns its name. With the controller manager running it also
// waits for the namespace's default ServiceAccount, without which the API
// server rejects pods.
func (e *Env) CreateNamespace(ctx context.Context, generateName string) (string, error) {
	ns, err := e.clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: generateName},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("create namespace %s*: %w", generateName, err)
	}
	if e.cfg.controlLoops {
		if err := waitForServiceAccount(ctx, e.clientset, ns.Name, "default"); err != nil {
			return "", err
		}
	}
	return ns.Name, nil
}
