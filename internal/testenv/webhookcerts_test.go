package testenv

import (
	"crypto/x509"
	"encoding/pem"
	"testing"
	"time"
)

func TestNewWebhookCerts(t *testing.T) {
	for name, tc := range map[string]struct {
		ca      WebhookCA
		caName  string
		keyType string
		expires time.Duration
	}{
		"default": {WebhookCA{}, "kaic-test-webhook-ca", "EC PRIVATE KEY", 24 * time.Hour},
		"rsa":     {WebhookCA{Name: "op-ca", Organization: "op", NameAsDNS: true, RSA: true, Validity: 48 * time.Hour}, "op-ca", "RSA PRIVATE KEY", 48 * time.Hour},
	} {
		certs, err := NewWebhookCerts("svc.ns.svc", tc.ca)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		caBlock, _ := pem.Decode(certs.CAPEM)
		ca, err := x509.ParseCertificate(caBlock.Bytes)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if ca.Subject.CommonName != tc.caName || !ca.IsCA || (tc.ca.NameAsDNS && (len(ca.DNSNames) != 1 || ca.DNSNames[0] != tc.caName)) {
			t.Errorf("%s: CA %v, DNS names %v", name, ca.Subject, ca.DNSNames)
		}
		if got := ca.NotAfter.Sub(ca.NotBefore); got != tc.expires {
			t.Errorf("%s: CA valid for %s, want %s", name, got, tc.expires)
		}
		if keyBlock, _ := pem.Decode(certs.CAKeyPEM); keyBlock == nil || keyBlock.Type != tc.keyType {
			t.Errorf("%s: CA key %v, want %s", name, keyBlock, tc.keyType)
		}
		certBlock, _ := pem.Decode(certs.CertPEM)
		cert, err := x509.ParseCertificate(certBlock.Bytes)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		pool := x509.NewCertPool()
		pool.AddCert(ca)
		for _, host := range []string{"svc.ns.svc", "127.0.0.1"} {
			if _, err := cert.Verify(x509.VerifyOptions{DNSName: host, Roots: pool}); err != nil {
				t.Errorf("%s: serving certificate for %s: %v", name, host, err)
			}
		}
	}
}
