package probe

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestFindDevicesFromEnv(t *testing.T) {
	env := []string{"PATH=/bin", "GPU_DEVICE_0=gpu-3", "GPU_DEVICE_1=gpu-5", "GPU_DEVICE_0_SHARING_STRATEGY=TimeSlicing", "GPU_DEVICE_=x", "OTHER_GPU_DEVICE_2=gpu-9"}
	r, err := FindDevices(env, "GPU_DEVICE_", "")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(r.Devices, ",") != "gpu-3,gpu-5" {
		t.Errorf("devices = %v", r.Devices)
	}
	none, _ := FindDevices([]string{"PATH=/bin"}, "GPU_DEVICE_", "")
	if len(none.Devices) != 0 {
		t.Errorf("devices without env: %v", none.Devices)
	}
}

func TestFindDevicesFromGlob(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r, err := FindDevices(nil, "", filepath.Join(dir, "nvidia[0-9]*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Devices) != 2 || !strings.HasSuffix(r.Devices[0], "/nvidia0") || !strings.HasSuffix(r.Devices[1], "/nvidia1") {
		t.Errorf("devices = %v", r.Devices)
	}
	if _, err := FindDevices(nil, "", "[x"); err == nil {
		t.Error("a malformed glob was accepted")
	}
}

func TestDeviceReportRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteDeviceReport(&buf, DeviceReport{Devices: []string{"gpu-1", "gpu-2"}}); err != nil {
		t.Fatal(err)
	}
	got := ParseResults("some noise\n" + buf.String())
	if got["ACCELERATOR_COUNT"] != "2" || got["DEVICES"] != "gpu-1,gpu-2" {
		t.Errorf("results = %v", got)
	}
	if _, ok := got["ACCELERATOR_FOUND"]; !ok {
		t.Errorf("no FOUND line: %q", buf.String())
	}
	buf.Reset()
	_ = WriteDeviceReport(&buf, DeviceReport{})
	if got := ParseResults(buf.String()); got["ACCELERATOR_COUNT"] != "0" {
		t.Errorf("empty report = %v", got)
	} else if _, ok := got["ACCELERATOR_MISSING"]; !ok {
		t.Errorf("no MISSING line: %q", buf.String())
	}
}

// TestServer runs the probe's HTTP mode on loopback and scrapes it.
func TestServer(t *testing.T) {
	s := NewServer("v2", "pod-a", "ns", "node-1")
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, "127.0.0.1:0", func(a net.Addr) { addrc <- a }) }()
	base := "http://" + (<-addrc).String()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	client := &http.Client{Timeout: 5 * time.Second}

	req, _ := http.NewRequest(http.MethodGet, base+"/anything", nil)
	req.Header.Set("X-Model", "llama")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var id Identity
	if err := json.NewDecoder(resp.Body).Decode(&id); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if id.Backend != "v2" || id.Pod != "pod-a" || id.Node != "node-1" || id.Headers["X-Model"] != "llama" || id.Path != "/anything" {
		t.Errorf("identity = %+v", id)
	}
	for i := 0; i < 7; i++ {
		resp, err := client.Post(base+"/v1/infer", "application/json", strings.NewReader(`{"prompt":"x"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	req, _ = http.NewRequest(http.MethodPut, base+"/load?value=42.5", nil)
	if resp, err = client.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("set load: %v %v", resp, err)
	}
	resp.Body.Close()
	req, _ = http.NewRequest(http.MethodPut, base+"/load?value=high", nil)
	if resp, err = client.Do(req); err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Errorf("bad load value: %v %v", resp, err)
	}
	resp.Body.Close()
	resp, err = client.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	metrics := string(body)
	for _, want := range []string{MetricRequests + " 7", MetricLoad + " 42.5", MetricLatency + "_count 7"} {
		if !strings.Contains(metrics, want+"\n") {
			t.Errorf("metrics lack %q:\n%s", want, metrics)
		}
	}
	if s.Served() != 7 {
		t.Errorf("served = %d", s.Served())
	}
}

func TestDriverVersionsFromEnv(t *testing.T) {
	env := []string{
		"GPU_DEVICE_0=gpu-0", "GPU_DEVICE_0_DRIVER_VERSION=1.2.0",
		"GPU_DEVICE_1=gpu-1", "GPU_DEVICE_1_DRIVER_VERSION=1.2.0",
		"GPU_DEVICE_0_SHARING_STRATEGY=TimeSlicing",
		"GPU_DEVICE_X_DRIVER_VERSION=9.9.9", // not a device's
		"OTHER_0_DRIVER_VERSION=8.8.8",
	}
	r, err := FindDevices(env, "GPU_DEVICE_", "")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.Devices, []string{"gpu-0", "gpu-1"}) || !slices.Equal(r.DriverVersions, []string{"1.2.0"}) {
		t.Errorf("report = %+v", r)
	}
	var buf bytes.Buffer
	if err := WriteDeviceReport(&buf, r); err != nil {
		t.Fatal(err)
	}
	if got := ParseResults(buf.String()); got["DRIVER_VERSIONS"] != "1.2.0" {
		t.Errorf("results = %v", got)
	}
	none, _ := FindDevices([]string{"GPU_DEVICE_0=gpu-0"}, "GPU_DEVICE_", "")
	buf.Reset()
	_ = WriteDeviceReport(&buf, none)
	if len(none.DriverVersions) != 0 || strings.Contains(buf.String(), "DRIVER_VERSIONS") {
		t.Errorf("a driver that exposes no version reported one: %+v %q", none, buf.String())
	}
}

func TestDriverVersionFromNVIDIAFile(t *testing.T) {
	dir := t.TempDir()
	old := nvidiaVersionFile
	t.Cleanup(func() { nvidiaVersionFile = old })
	nvidiaVersionFile = filepath.Join(dir, "version")
	if err := os.WriteFile(nvidiaVersionFile, []byte("NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.82.07  Wed Aug 13 2026\nGCC version:  gcc version 12.2.0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := FindDevices(nil, "", filepath.Join(dir, "nvidia[0-9]*"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.DriverVersions, []string{"580.82.07"}) {
		t.Errorf("driver versions = %v", r.DriverVersions)
	}
	// Without a device glob the file is not read.
	if r, _ := FindDevices(nil, "GPU_DEVICE_", ""); len(r.DriverVersions) != 0 {
		t.Errorf("driver versions without a glob = %v", r.DriverVersions)
	}
}
