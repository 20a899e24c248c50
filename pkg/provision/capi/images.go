package capi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	kindcluster "sigs.k8s.io/kind/pkg/cluster"
	"sigs.k8s.io/kind/pkg/cluster/nodeutils"

	"github.com/kaic-dev/kaic/pkg/profile"
	"github.com/kaic-dev/kaic/pkg/progress"
	"github.com/kaic-dev/kaic/pkg/provision"
)

// Images reach the machines of Cluster API's Docker provider (CAPD) in two
// ways. Before the workload cluster exists, kaic loads them into the Docker
// engine the machines run on and names them in every DockerMachineTemplate's
// preLoadImages, which CAPD imports into each machine it creates — the
// machines the autoscaler adds later included. Into a cluster that already
// runs, they are imported into each machine's containerd directly.

// LoadsImages reports whether kaic gets images into the machines of a
// profile's cluster: only on the Docker provider, whose machines are
// containers of this machine's engine.
func LoadsImages(c *profile.CAPICluster) bool {
	return c != nil && c.Infrastructure == "docker"
}

// preloadKinds are CAPD's machine template kinds and where each keeps its
// machines' spec.
var preloadKinds = map[string][]string{
	"DockerMachineTemplate":     {"spec", "template", "spec"},
	"DockerMachinePoolTemplate": {"spec", "template", "spec", "template"},
}

// setPreloadImages adds refs to the preLoadImages of every CAPD machine
// template among objs (a ClusterClass's templates included) and returns the
// names of the templates it changed.
func setPreloadImages(objs []unstructured.Unstructured, refs []string) ([]string, error) {
	var changed []string
	for i := range objs {
		o := &objs[i]
		path, ok := preloadKinds[o.GetKind()]
		if !ok || o.GroupVersionKind().Group != "infrastructure.cluster.x-k8s.io" {
			continue
		}
		field := append(slices.Clone(path), "preLoadImages")
		have, _, err := unstructured.NestedStringSlice(o.Object, field...)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %s: %w", o.GetKind(), o.GetName(), strings.Join(field, "."), err)
		}
		for _, ref := range refs {
			if !slices.Contains(have, ref) {
				have = append(have, ref)
			}
		}
		if err := unstructured.SetNestedStringSlice(o.Object, have, field...); err != nil {
			return nil, fmt.Errorf("%s %s: %w", o.GetKind(), o.GetName(), err)
		}
		changed = append(changed, o.GetKind()+" "+o.GetName())
	}
	return changed, nil
}

// engineLoadTimeout bounds loading one image into the Docker engine.
const engineLoadTimeout = 5 * time.Minute

// loadIntoEngine loads images into the Docker engine that DOCKER_HOST names
// (default the local socket), through the engine's API, as `docker load`
// does.
func loadIntoEngine(ctx context.Context, getenv func(string) string, images []provision.Image, r progress.Steps) error {
	client, endpoint, err := engineClient(getenv)
	if err != nil {
		return err
	}
	for _, img := range images {
		step := r.StartStep(fmt.Sprintf("loading %s into the Docker engine at %s for Cluster API's machines", img.Ref, endpoint))
		err := engineLoad(ctx, client, img)
		step.Done(err)
		if err != nil {
			return err
		}
	}
	return nil
}

// engineClient is an HTTP client for the Docker engine's API and the
// address it reaches, from DOCKER_HOST: unix:///path (the default,
// /var/run/docker.sock) or tcp://host:port without TLS.
func engineClient(getenv func(string) string) (*http.Client, string, error) {
	host := getenv("DOCKER_HOST")
	if host == "" {
		host = "unix:///var/run/docker.sock"
	}
	u, err := url.Parse(host)
	if err != nil {
		return nil, "", fmt.Errorf("DOCKER_HOST %q: %w", host, err)
	}
	var dial func(ctx context.Context) (net.Conn, error)
	switch u.Scheme {
	case "unix":
		dial = func(ctx context.Context) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", u.Path)
		}
	case "tcp":
		if getenv("DOCKER_TLS_VERIFY") != "" {
			return nil, "", fmt.Errorf("DOCKER_HOST %s with DOCKER_TLS_VERIFY: kaic loads images only into an engine reached without TLS (a local socket, or tcp:// without TLS)", host)
		}
		dial = func(ctx context.Context) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", u.Host)
		}
	default:
		return nil, "", fmt.Errorf("DOCKER_HOST %q: kaic reaches a Docker engine through unix:// or tcp://", host)
	}
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) }}
	return &http.Client{Transport: tr}, host, nil
}

// engineLoad posts an image archive to the engine's /images/load and reads
// the engine's answer, which reports a failure inside a 200 response.
func engineLoad(ctx context.Context, client *http.Client, img provision.Image) error {
	ctx, cancel := context.WithTimeout(ctx, engineLoadTimeout)
	defer cancel()
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(img.WriteArchive(pw)) }()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://docker/images/load?quiet=1", pr)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-tar")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("loading %s into the Docker engine: %w", img.Ref, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("loading %s into the Docker engine: %w", img.Ref, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("loading %s into the Docker engine: %s: %s", img.Ref, resp.Status, strings.TrimSpace(string(body)))
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	for {
		var msg struct {
			Error       string `json:"error"`
			ErrorDetail struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&msg); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return fmt.Errorf("loading %s into the Docker engine: unreadable answer %q: %w", img.Ref, body, err)
		}
		if msg.Error != "" {
			return fmt.Errorf("loading %s into the Docker engine: %s", img.Ref, msg.Error)
		}
	}
}

// LoadImages imports images into every machine of the running workload
// cluster rec records (CAPD only), loads them into the engine as well, and
// records them in rec. Machines created later get only what their template
// preloads, which r is told.
func (p *Provisioner) LoadImages(ctx context.Context, rec provision.Record, images []provision.Image, r progress.Steps) error {
	var missing []provision.Image
	for _, img := range images {
		if !rec.Loaded(img.Ref) {
			missing = append(missing, img)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	c := p.Profile.Spec.Cluster.CAPI
	if !LoadsImages(c) {
		return fmt.Errorf("kaic cannot load images into the machines of the %s provider", c.Infrastructure)
	}
	if err := loadIntoEngine(ctx, p.getenv, missing, r); err != nil {
		return err
	}
	// CAPD labels its machine containers with kind's cluster label, so
	// kind's node listing finds them.
	provider := kindcluster.NewProvider(kindcluster.ProviderWithDocker())
	nodes, err := provider.ListNodes(rec[provision.KeyClusterName])
	if err != nil {
		return fmt.Errorf("listing the machines of %s: %w", rec[provision.KeyClusterName], err)
	}
	for _, img := range missing {
		step := r.StartStep(fmt.Sprintf("loading %s into %d machines", img.Ref, len(nodes)))
		err := func() error {
			for _, n := range nodes {
				pr, pw := io.Pipe()
				go func() { pw.CloseWithError(img.WriteArchive(pw)) }()
				err := nodeutils.LoadImageArchive(n, pr)
				pr.CloseWithError(errors.New("the machine stopped reading the image"))
				if err != nil {
					return fmt.Errorf("loading %s into machine %s: %w", img.Ref, n.String(), err)
				}
			}
			return nil
		}()
		step.Done(err)
		if err != nil {
			return err
		}
		rec.AddLoaded(img.Ref)
	}
	r.Notef("machines Cluster API adds from now on preload only the images named when the cluster was created; a later kaic run with another binary loads its probe image into them as it starts")
	return nil
}
