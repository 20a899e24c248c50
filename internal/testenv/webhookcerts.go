package testenv

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"time"
)

// WebhookCA describes the certificate authority of [NewWebhookCerts]. The
// zero value is an ECDSA CA called kaic-test-webhook-ca, valid for a day.
type WebhookCA struct {
	// Name is the CA certificate's common name.
	Name string
	// Organization, if set, is its subject's organization.
	Organization string
	// NameAsDNS also names the CA certificate for Name as a DNS name, for
	// certificate managers that verify their CA as a certificate for it.
	NameAsDNS bool
	// RSA gives the CA an RSA 2048 key (PKCS #1 PEM) instead of an ECDSA
	// P-256 one.
	RSA bool
	// Validity is how long the certificates stay valid from an hour ago.
	Validity time.Duration
}

// WebhookCerts are a CA and a serving certificate it signed for a webhook
// service's DNS name and 127.0.0.1, where the API server calls webhooks
// served by an operator running on the test's machine. All are PEM encoded.
type WebhookCerts struct {
	CAPEM, CAKeyPEM, CertPEM, KeyPEM []byte
}

// NewWebhookCerts creates a CA as ca describes and a serving certificate
// with an ECDSA P-256 key for dnsName and 127.0.0.1.
func NewWebhookCerts(dnsName string, ca WebhookCA) (*WebhookCerts, error) {
	if ca.Name == "" {
		ca.Name = "kaic-test-webhook-ca"
	}
	if ca.Validity == 0 {
		ca.Validity = 24 * time.Hour
	}
	subject := pkix.Name{CommonName: ca.Name}
	if ca.Organization != "" {
		subject.Organization = []string{ca.Organization}
	}
	var caDNSNames []string
	if ca.NameAsDNS {
		caDNSNames = []string{ca.Name}
	}
	notBefore := time.Now().Add(-time.Hour)
	notAfter := notBefore.Add(ca.Validity)
	caCert, caKey, caPEM, err := newCA(subject, caDNSNames, notBefore, notAfter, ca.RSA)
	if err != nil {
		return nil, err
	}
	var caKeyPEM []byte
	switch k := caKey.(type) {
	case *rsa.PrivateKey:
		caKeyPEM = pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
	case *ecdsa.PrivateKey:
		if caKeyPEM, err = encodeKey(k); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unexpected CA key %T", caKey)
	}
	certPEM, keyPEM, err := issue(caCert, caKey, &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: dnsName},
		DNSNames:     []string{dnsName},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return nil, err
	}
	return &WebhookCerts{CAPEM: caPEM, CAKeyPEM: caKeyPEM, CertPEM: certPEM, KeyPEM: keyPEM}, nil
}
