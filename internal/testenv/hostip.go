package testenv

import (
	"fmt"
	"net"
)

// ProxyableHostIP is an IPv4 address of this host that the API server's
// service and pod proxies accept (they refuse loopback and link-local
// addresses): tests serve on it what the proxies should reach, behind
// Pods, Services and EndpointSlices that name it.
func ProxyableHostIP() (string, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "", err
	}
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			return n.IP.String(), nil
		}
	}
	return "", fmt.Errorf("no non-loopback IPv4 address on this host for the API server's proxies to reach")
}
