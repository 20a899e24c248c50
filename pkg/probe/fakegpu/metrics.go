package fakegpu

import (
	"log/slog"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric names (those of the `example` accelerator model's metrics). Every
// series has the labels device (the device name), uuid, model and node.
const (
	MetricUtilization = "kaic_fake_gpu_utilization_percent"
	MetricMemoryUsed  = "kaic_fake_gpu_memory_used_bytes"
	MetricMemoryTotal = "kaic_fake_gpu_memory_total_bytes"
	MetricTemperature = "kaic_fake_gpu_temperature_celsius"
	MetricPower       = "kaic_fake_gpu_power_watts"
	// MetricAllocated is 1 while a prepared claim (device plugin: a
	// container) holds the device.
	MetricAllocated = "kaic_fake_gpu_allocated"
)

// The thermal and power model: idle values, rising linearly with
// utilization to the values at full load.
const (
	idleCelsius = 32.0
	fullCelsius = 78.0
	idleWatts   = 60.0
	fullWatts   = 700.0
)

// DeviceState is what the metrics report for one device.
type DeviceState struct {
	Device
	// Allocated says a prepared claim holds the device; a device no claim
	// holds has no load, whatever files are left in its directory.
	Allocated          bool
	UtilizationPercent float64
	MemoryUsed         int64
}

// Temperature follows utilization.
func (s DeviceState) Temperature() float64 {
	return idleCelsius + (fullCelsius-idleCelsius)*s.UtilizationPercent/100
}

// Power follows utilization.
func (s DeviceState) Power() float64 {
	return idleWatts + (fullWatts-idleWatts)*s.UtilizationPercent/100
}

// holdings says which devices are held now and where each device's load
// directory is: the CDI specs of prepared claims (DRA), or the kubelet's
// record of the devices assigned to containers (device plugin).
type holdings interface {
	held() (map[string]bool, error)
	loadDir(device string) string
}

func (c cdiSpecs) held() (map[string]bool, error) {
	holders, err := c.Holders()
	if err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(holders))
	for d, uids := range holders {
		out[d] = len(uids) > 0
	}
	return out, nil
}

func (c cdiSpecs) loadDir(device string) string { return filepath.Join(c.stateDir, device) }

// Observe reads the state of every device at time now: which ones are
// held and the load their holders wrote.
func Observe(devices []Device, h holdings, now time.Time) ([]DeviceState, error) {
	held, err := h.held()
	if err != nil {
		return nil, err
	}
	out := make([]DeviceState, len(devices))
	for i, d := range devices {
		s := DeviceState{Device: d, Allocated: held[d.Name]}
		if s.Allocated {
			l := ReadLoad(h.loadDir(d.Name), now)
			s.UtilizationPercent, s.MemoryUsed = l.UtilizationPercent, min(l.MemoryBytes, d.Memory)
		}
		out[i] = s
	}
	return out, nil
}

// collector turns device states into metrics at every scrape, so the
// values are never older than the scrape.
type collector struct {
	node    string
	devices []Device
	specs   holdings
	logger  *slog.Logger
	now     func() time.Time

	util, memUsed, memTotal, temp, power, allocated *prometheus.Desc
}

func newCollector(node string, devices []Device, specs holdings, logger *slog.Logger) *collector {
	labels := []string{"device", "uuid", "model", "node"}
	desc := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, labels, nil) }
	return &collector{
		node: node, devices: devices, specs: specs, logger: logger, now: time.Now,
		util:      desc(MetricUtilization, "Utilization of the simulated device, from the load of the pods holding it."),
		memUsed:   desc(MetricMemoryUsed, "Device memory in use by the pods holding the device."),
		memTotal:  desc(MetricMemoryTotal, "Device memory capacity."),
		temp:      desc(MetricTemperature, "Simulated device temperature, following utilization."),
		power:     desc(MetricPower, "Simulated power draw, following utilization."),
		allocated: desc(MetricAllocated, "1 while a prepared ResourceClaim, or in device-plugin mode a container, holds the device."),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.util, c.memUsed, c.memTotal, c.temp, c.power, c.allocated} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	states, err := Observe(c.devices, c.specs, c.now())
	if err != nil {
		c.logger.Error("reading device state", "err", err)
		ch <- prometheus.NewInvalidMetric(c.util, err)
		return
	}
	for _, s := range states {
		labels := []string{s.Name, s.UUID, s.Model, c.node}
		gauge := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
		}
		allocated := 0.0
		if s.Allocated {
			allocated = 1
		}
		gauge(c.util, s.UtilizationPercent)
		gauge(c.memUsed, float64(s.MemoryUsed))
		gauge(c.memTotal, float64(s.Memory))
		gauge(c.temp, s.Temperature())
		gauge(c.power, s.Power())
		gauge(c.allocated, allocated)
	}
}
