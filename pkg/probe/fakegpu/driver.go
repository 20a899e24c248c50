package fakegpu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"time"

	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/dynamic-resource-allocation/kubeletplugin"
)

// healthInterval is how often device health is re-sent to the kubelet,
// well inside its 30 s staleness window.
const healthInterval = 10 * time.Second

// Driver is the node side of kaic-fake-gpu: the kubeletplugin.DRAPlugin
// that prepares claims of its node's devices by writing CDI specs.
type Driver struct {
	node     string
	devices  []Device
	byName   map[string]Device
	specs    cdiSpecs
	logger   *slog.Logger
	shutdown func(error)
}

var _ kubeletplugin.DRAPlugin = (*Driver)(nil)

// NewDriver returns the driver of a node's devices that keeps CDI specs in
// cdiDir and device load directories in stateDir. shutdown is called with
// errors the driver cannot recover from (nil: they are only logged).
func NewDriver(node string, devices []Device, cdiDir, stateDir string, logger *slog.Logger, shutdown func(error)) *Driver {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if shutdown == nil {
		shutdown = func(error) {}
	}
	d := &Driver{node: node, devices: devices, byName: map[string]Device{}, specs: cdiSpecs{dir: cdiDir, stateDir: stateDir}, logger: logger, shutdown: shutdown}
	for _, dev := range devices {
		d.byName[dev.Name] = dev
	}
	return d
}

// Devices returns the node's devices.
func (d *Driver) Devices() []Device { return d.devices }

// PrepareResourceClaims writes one CDI spec per claim naming the claim's
// devices of this driver, and gives each device an empty load directory
// when the claim is its first holder. Preparing a prepared claim again
// rewrites the same spec.
func (d *Driver) PrepareResourceClaims(ctx context.Context, claims []*resourceapi.ResourceClaim) (map[types.UID]kubeletplugin.PrepareResult, error) {
	holders, err := d.specs.Holders()
	if err != nil {
		return nil, fmt.Errorf("reading prepared claims: %w", err)
	}
	out := make(map[types.UID]kubeletplugin.PrepareResult, len(claims))
	for _, claim := range claims {
		res, err := d.prepare(claim, holders)
		if err != nil {
			d.logger.Error("preparing claim failed", "claim", claim.Namespace+"/"+claim.Name, "uid", claim.UID, "err", err)
			out[claim.UID] = kubeletplugin.PrepareResult{Err: err}
			continue
		}
		d.logger.Info("prepared claim", "claim", claim.Namespace+"/"+claim.Name, "uid", claim.UID, "devices", len(res.Devices))
		out[claim.UID] = res
	}
	return out, nil
}

func (d *Driver) prepare(claim *resourceapi.ResourceClaim, holders map[string][]types.UID) (kubeletplugin.PrepareResult, error) {
	if claim.Status.Allocation == nil {
		return kubeletplugin.PrepareResult{}, fmt.Errorf("claim %s/%s is not allocated", claim.Namespace, claim.Name)
	}
	var (
		devices []Device
		result  kubeletplugin.PrepareResult
	)
	for _, r := range claim.Status.Allocation.Devices.Results {
		if r.Driver != DriverName {
			continue
		}
		if r.Pool != d.node {
			return kubeletplugin.PrepareResult{}, fmt.Errorf("device %s is in pool %s, not in this node's pool %s", r.Device, r.Pool, d.node)
		}
		dev, ok := d.byName[r.Device]
		if !ok {
			return kubeletplugin.PrepareResult{}, fmt.Errorf("node %s has no device %s", d.node, r.Device)
		}
		// The scheduler never gives one device to two claims unless the
		// device is shared (each claim then holds a share of it) or one of
		// them asks for admin access; the driver is the last line of
		// defence if something went wrong.
		if r.ShareID != nil && !dev.Shared() {
			return kubeletplugin.PrepareResult{}, fmt.Errorf("claim holds share %s of device %s, which is not shared", *r.ShareID, dev.Name)
		}
		others := slices.DeleteFunc(slices.Clone(holders[dev.Name]), func(u types.UID) bool { return u == claim.UID })
		switch {
		case ptrTrue(r.AdminAccess) || len(others) == 0:
		case !dev.Shared():
			return kubeletplugin.PrepareResult{}, fmt.Errorf("device %s is already prepared for claim %s", dev.Name, others[0])
		case len(others) >= dev.Replicas:
			return kubeletplugin.PrepareResult{}, fmt.Errorf("shared device %s already has %d holders, all it takes", dev.Name, len(others))
		}
		if !slices.ContainsFunc(devices, func(x Device) bool { return x.Name == dev.Name }) {
			devices = append(devices, dev)
		}
		result.Devices = append(result.Devices, kubeletplugin.Device{
			Requests:     []string{r.Request},
			PoolName:     r.Pool,
			DeviceName:   r.Device,
			CDIDeviceIDs: []string{deviceID(claim.UID, dev.Name)},
			ShareID:      r.ShareID,
		})
	}
	for _, dev := range devices {
		if len(holders[dev.Name]) > 0 {
			continue // a load directory in use by the holder's containers
		}
		if err := resetLoadDir(filepath.Join(d.specs.stateDir, dev.Name)); err != nil {
			return kubeletplugin.PrepareResult{}, fmt.Errorf("load directory of %s: %w", dev.Name, err)
		}
	}
	if len(devices) > 0 {
		if err := d.specs.Write(claim.UID, devices); err != nil {
			return kubeletplugin.PrepareResult{}, fmt.Errorf("writing the CDI spec: %w", err)
		}
	}
	return result, nil
}

func ptrTrue(b *bool) bool { return b != nil && *b }

// UnprepareResourceClaims removes the claims' CDI specs and clears the load
// of devices no other claim holds. Unpreparing an unknown claim succeeds.
func (d *Driver) UnprepareResourceClaims(ctx context.Context, claims []kubeletplugin.NamespacedObject) (map[types.UID]error, error) {
	out := make(map[types.UID]error, len(claims))
	for _, claim := range claims {
		out[claim.UID] = d.unprepare(claim.UID)
		if out[claim.UID] != nil {
			d.logger.Error("unpreparing claim failed", "claim", claim.String(), "err", out[claim.UID])
		} else {
			d.logger.Info("unprepared claim", "claim", claim.String())
		}
	}
	return out, nil
}

func (d *Driver) unprepare(claim types.UID) error {
	devices, err := d.specs.Devices(claim)
	if err != nil {
		return err
	}
	if err := d.specs.Remove(claim); err != nil {
		return err
	}
	holders, err := d.specs.Holders()
	if err != nil {
		return err
	}
	var errs []error
	for _, name := range devices {
		if _, known := d.byName[name]; !known || len(holders[name]) > 0 {
			continue
		}
		errs = append(errs, resetLoadDir(filepath.Join(d.specs.stateDir, name)))
	}
	return errors.Join(errs...)
}

// HandleError logs background errors (ResourceSlice publishing, gRPC
// servers) and shuts the driver down on those that retrying cannot fix.
func (d *Driver) HandleError(ctx context.Context, err error, msg string) {
	if errors.Is(err, kubeletplugin.ErrRecoverable) {
		d.logger.Warn(msg, "err", err)
		return
	}
	d.logger.Error(msg, "err", err)
	d.shutdown(fmt.Errorf("%s: %w", msg, err))
}

// WatchHealthStatus reports every device healthy, again every
// healthInterval so the kubelet never considers the report stale.
func (d *Driver) WatchHealthStatus(ctx context.Context, reports chan<- kubeletplugin.DeviceHealthReport) error {
	tick := time.NewTicker(healthInterval)
	defer tick.Stop()
	for {
		report := kubeletplugin.DeviceHealthReport{}
		now := time.Now()
		for _, dev := range d.devices {
			report.Devices = append(report.Devices, kubeletplugin.DeviceHealth{
				PoolName: d.node, DeviceName: dev.Name, Health: kubeletplugin.HealthStatusHealthy,
				LastUpdated: now, HealthCheckTimeout: 3 * healthInterval,
			})
		}
		select {
		case <-ctx.Done():
			return nil
		case reports <- report:
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}
