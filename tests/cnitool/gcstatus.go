package main

// GC and STATUS (spec 1.1.0). libcni 1.1.2 predates GCNetworkList and GetStatusNetworkList, so
// these follow the spec and libcni >= 1.2's documented behaviour on top of libcni 1.1.2's public
// pieces (result cache, DelNetworkList, invoke):
//   - GC: DEL every cached attachment of the network that is not in the valid set; then, for
//     lists >= 1.1.0, send GC to every plugin with cni.dev/valid-attachments (and the older
//     cni.dev/attachments key, as libcni does), continuing past errors and joining them.
//   - STATUS: lists < 1.1.0 succeed without calling plugins; otherwise each plugin in order,
//     first error wins.
// Plugins that do not list the list's version in VERSION (Debian's 1.1.1 ones) are skipped for
// GC/STATUS: they implement neither.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/version"
)

// attachment is one (container ID, ifname) pair as the spec's GC input spells it.
type attachment struct {
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifname"`
}

// parseValid parses --valid "cid/ifname,cid2/ifname".
func parseValid(s string) ([]attachment, error) {
	out := []attachment{}
	if s == "" {
		return out, nil
	}
	for _, item := range strings.Split(s, ",") {
		parts := strings.SplitN(item, "/", 2)
		if len(parts) != 2 || parts[0] == "" || parts[1] == "" {
			return nil, fmt.Errorf("--valid: %q is not containerID/ifname", item)
		}
		out = append(out, attachment{ContainerID: parts[0], IfName: parts[1]})
	}
	return out, nil
}

// gcNetworkList implements GC for the list, see the file comment.
func gcNetworkList(ctx context.Context, cni *libcni.CNIConfig, exec invoke.Exec,
	list *libcni.NetworkConfigList, listVersion string, paths []string, opts *options) error {
	valid, err := parseValid(opts.valid)
	if err != nil {
		return err
	}
	errs := delStaleCached(ctx, cni, list, opts.cacheDir, valid)
	if atLeast(listVersion, "1.1.0") {
		extra := map[string]interface{}{
			"cni.dev/valid-attachments": valid,
			"cni.dev/attachments":       valid,
		}
		for _, p := range list.Plugins {
			if err := execPluginCommand(ctx, exec, p, list.Name, listVersion, "GC", paths, extra); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return joinErrors(errs)
}

// statusNetworkList implements STATUS for the list, see the file comment.
func statusNetworkList(ctx context.Context, exec invoke.Exec, list *libcni.NetworkConfigList,
	listVersion string, paths []string) error {
	if !atLeast(listVersion, "1.1.0") {
		return nil
	}
	for _, p := range list.Plugins {
		if err := execPluginCommand(ctx, exec, p, list.Name, listVersion, "STATUS", paths, nil); err != nil {
			return err
		}
	}
	return nil
}

// execPluginCommand sends GC or STATUS to one plugin: its config plus name, cniVersion and extra.
func execPluginCommand(ctx context.Context, exec invoke.Exec, p *libcni.NetworkConfig, name,
	listVersion, command string, paths []string, extra map[string]interface{}) error {
	pluginPath, err := exec.FindInPath(p.Network.Type, paths)
	if err != nil {
		return err
	}
	if !supportsVersion(ctx, exec, pluginPath, listVersion) {
		fmt.Fprintf(os.Stderr, "raven-cnitool: %s: skipping %s (plugin does not support %s)\n",
			command, p.Network.Type, listVersion)
		return nil
	}
	inject := map[string]interface{}{"name": name, "cniVersion": listVersion}
	for k, v := range extra {
		inject[k] = v
	}
	conf, err := libcni.InjectConf(p, inject)
	if err != nil {
		return err
	}
	args := &invoke.Args{Command: command, Path: strings.Join(paths, string(filepath.ListSeparator))}
	// The request already carries the real version; bypass compatExec's relabelling.
	if c, ok := exec.(*compatExec); ok {
		exec = c.inner
	}
	if err := invoke.ExecPluginWithoutResult(ctx, pluginPath, conf.Bytes, args, exec); err != nil {
		return fmt.Errorf("plugin type=%q failed (%s): %w", p.Network.Type, strings.ToLower(command), err)
	}
	return nil
}

// cachedAttachment is the part of libcni's result-cache file that GC needs.
type cachedAttachment struct {
	Kind           string                 `json:"kind"`
	ContainerID    string                 `json:"containerId"`
	IfName         string                 `json:"ifName"`
	NetworkName    string                 `json:"networkName"`
	CniArgs        [][2]string            `json:"cniArgs,omitempty"`
	CapabilityArgs map[string]interface{} `json:"capabilityArgs,omitempty"`
}

// delStaleCached DELs every cached attachment of the list's network that is not valid.
func delStaleCached(ctx context.Context, cni *libcni.CNIConfig, list *libcni.NetworkConfigList,
	cacheDir string, valid []attachment) []error {
	keep := map[attachment]bool{}
	for _, a := range valid {
		keep[a] = true
	}
	cached, err := readCache(cacheDir, list.Name)
	if err != nil {
		return []error{err}
	}
	var errs []error
	for _, c := range cached {
		if keep[attachment{ContainerID: c.ContainerID, IfName: c.IfName}] {
			continue
		}
		rt := &libcni.RuntimeConf{ContainerID: c.ContainerID, IfName: c.IfName, Args: c.CniArgs,
			CapabilityArgs: c.CapabilityArgs}
		if err := cni.DelNetworkList(ctx, list, rt); err != nil {
			errs = append(errs, fmt.Errorf("gc: DEL %s/%s: %w", c.ContainerID, c.IfName, err))
		}
	}
	return errs
}

// readCache lists the cached attachments of one network (missing cache dir: none).
func readCache(cacheDir, network string) ([]cachedAttachment, error) {
	dir := filepath.Join(cacheDir, "results")
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("gc: read cache dir: %w", err)
	}
	var out []cachedAttachment
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), network+"-") {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("gc: read cache entry %s: %w", e.Name(), err)
		}
		var c cachedAttachment
		if err := json.Unmarshal(raw, &c); err != nil || c.Kind != libcni.CNICacheV1 ||
			c.NetworkName != network {
			continue
		}
		out = append(out, c)
	}
	return out, nil
}

// atLeast compares spec versions; an unparsable version counts as "no".
func atLeast(v, min string) bool {
	ok, err := version.GreaterThanOrEqualTo(v, min)
	return err == nil && ok
}

// multiError joins GC errors (Go 1.19 has no errors.Join). Unwrap exposes the first one, so a
// plugin's CNI error code still reaches the output.
type multiError []error

func (m multiError) Error() string {
	msgs := make([]string, len(m))
	for i, e := range m {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "; ")
}

func (m multiError) Unwrap() error { return m[0] }

// joinErrors returns nil for no errors, the error itself for one, a multiError otherwise.
func joinErrors(errs []error) error {
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	default:
		return multiError(errs)
	}
}
