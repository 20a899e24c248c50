package kaic

import (
	"context"

	"github.com/kaic-dev/kaic/pkg/provision/preflight"
)

// DoctorOptions say which profile's needs to check on this machine.
type DoctorOptions struct {
	// Profile is a built-in name or a file.
	Profile string
	// Dir is the run directory whose disk is checked ("" for the
	// profile's).
	Dir string
	// Host is what the checks read (nil for this machine).
	Host *preflight.Host
}

// DoctorReport is what kaic doctor found.
type DoctorReport struct {
	// Findings are the checks made, in order.
	Findings []preflight.Finding `json:"findings"`
	// Skipped says why nothing needed checking, when nothing was.
	Skipped string `json:"skipped,omitempty"`
}

// Failed reports whether a finding would stop provisioning.
func (d *DoctorReport) Failed() bool { return preflight.Failed(d.Findings) }

// Doctor checks what the provision phase of a profile needs on this
// machine.
func (c *Client) Doctor(ctx context.Context, o DoctorOptions) (*DoctorReport, error) {
	r, err := c.LoadProfile(o.Profile)
	if err != nil {
		return nil, err
	}
	b, err := backendOf(r.Profile)
	if err != nil {
		return nil, err
	}
	// What kaic plan would refuse (a Cluster API variable that is not
	// set, say) stops provisioning too: report it here rather than after
	// the pull.
	var planned []preflight.Finding
	if _, err := b.plan(r.Profile, c.getenv, &Cluster{}); err != nil {
		ref := o.Profile
		if ref == "" {
			ref = r.Profile.Metadata.Name
		}
		planned = append(planned, preflight.Finding{Check: "profile plan", Status: preflight.Fail, Detail: err.Error(),
			Fix: "set what it names, then check with kaic plan -p " + ref})
	}
	if _, err := c.probeImage(r.Profile); err != nil {
		planned = append(planned, preflight.Finding{Check: "probe image", Status: preflight.Fail, Detail: err.Error(),
			Fix: "push the probe image and set spec.checks.probeImage (kaic probe image --help)"})
	}
	opts, skip := b.preflight(r.Profile)
	if skip != "" {
		if len(planned) > 0 {
			return &DoctorReport{Findings: planned}, nil
		}
		return &DoctorReport{Skipped: skip}, nil
	}
	opts.Dir = o.Dir
	if opts.Dir == "" {
		opts.Dir = r.Profile.Spec.Output.Dir
	}
	host := o.Host
	if host == nil {
		host = &preflight.Host{}
	}
	return &DoctorReport{Findings: append(planned, preflight.Check(ctx, host, opts)...)}, nil
}
