package main

// Spec 1.1.0 lists on Debian bookworm's CNI stack.
//
// Debian ships libcni 1.1.2 (implements spec <= 1.0.0: no 1.1.0 result type, no GC/STATUS) and
// reference plugins 1.1.1 (also <= 1.0.0). A 1.1.0 list would therefore fail inside libcni and in
// Debian's bridge before raven-cni is ever reached. compatExec lets libcni run such a list at
// 1.0.0 (the 1.0.0 and 1.1.0 result layouts are the same; 1.1.0 only adds optional fields) while
// every plugin whose VERSION output lists the list's real version (raven-cni) is invoked with the
// real version on stdin, prevResult included. Plugins that do not speak it (Debian's) run at
// 1.0.0 exactly as libcni would run a 1.0.0 list. Nothing is rewritten for lists libcni knows.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/version"
)

// newExec returns the executor for list and the list's real version. For versions newer than
// libcni's own it downgrades list.CNIVersion in place and returns a compatExec.
func newExec(list *libcni.NetworkConfigList) (invoke.Exec, string) {
	inner := &invoke.DefaultExec{
		RawExec:       &invoke.RawExec{Stderr: os.Stderr},
		PluginDecoder: version.PluginDecoder{},
	}
	listVersion := list.CNIVersion
	if listVersion == version.Current() || !atLeast(listVersion, version.Current()) {
		return inner, listVersion
	}
	fmt.Fprintf(os.Stderr, "raven-cnitool: list version %s is newer than libcni's %s: "+
		"libcni runs it as %s, plugins that support %s get %s\n",
		listVersion, version.Current(), version.Current(), listVersion, listVersion)
	list.CNIVersion = version.Current()
	return &compatExec{inner: inner, listVersion: listVersion, speaks: map[string]bool{}}, listVersion
}

// compatExec wraps libcni's default executor, see the file comment.
type compatExec struct {
	inner       invoke.Exec
	listVersion string
	mu          sync.Mutex
	speaks      map[string]bool
}

var _ invoke.Exec = (*compatExec)(nil)

func (e *compatExec) FindInPath(plugin string, paths []string) (string, error) {
	return e.inner.FindInPath(plugin, paths)
}

func (e *compatExec) Decode(b []byte) (version.PluginInfo, error) {
	return e.inner.Decode(b)
}

// ExecPlugin runs the plugin at the list's real version when it supports it.
func (e *compatExec) ExecPlugin(ctx context.Context, pluginPath string, stdin []byte,
	environ []string) ([]byte, error) {
	if !e.pluginSpeaks(ctx, pluginPath) {
		return e.inner.ExecPlugin(ctx, pluginPath, stdin, environ)
	}
	upgraded, err := relabelRequest(stdin, e.listVersion)
	if err != nil {
		return nil, err
	}
	out, err := e.inner.ExecPlugin(ctx, pluginPath, upgraded, environ)
	if err != nil {
		return nil, err
	}
	return relabelResult(out, e.listVersion, version.Current()), nil
}

// pluginSpeaks reports (and caches) whether the plugin's VERSION lists the real list version.
func (e *compatExec) pluginSpeaks(ctx context.Context, pluginPath string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if known, ok := e.speaks[pluginPath]; ok {
		return known
	}
	ok := supportsVersion(ctx, e.inner, pluginPath, e.listVersion)
	e.speaks[pluginPath] = ok
	return ok
}

// supportsVersion asks the plugin for its VERSION info; a failure counts as "no".
func supportsVersion(ctx context.Context, exec invoke.Exec, pluginPath, want string) bool {
	info, err := invoke.GetVersionInfo(ctx, pluginPath, exec)
	if err != nil {
		fmt.Fprintf(os.Stderr, "raven-cnitool: VERSION of %s failed: %v\n", pluginPath, err)
		return false
	}
	for _, v := range info.SupportedVersions() {
		if v == want {
			return true
		}
	}
	return false
}

// relabelRequest sets cniVersion (and prevResult.cniVersion, if any) of a plugin's stdin.
func relabelRequest(stdin []byte, to string) ([]byte, error) {
	var conf map[string]interface{}
	if err := json.Unmarshal(stdin, &conf); err != nil {
		return nil, fmt.Errorf("decode plugin stdin: %w", err)
	}
	conf["cniVersion"] = to
	if prev, ok := conf["prevResult"].(map[string]interface{}); ok {
		prev["cniVersion"] = to
	}
	return json.Marshal(conf)
}

// relabelResult turns a result labelled `from` into one labelled `to`; anything else (empty
// output of DEL/CHECK, other versions, non-JSON) is returned untouched for libcni to judge.
func relabelResult(out []byte, from, to string) []byte {
	var res map[string]interface{}
	if len(out) == 0 || json.Unmarshal(out, &res) != nil || res["cniVersion"] != from {
		return out
	}
	res["cniVersion"] = to
	relabelled, err := json.Marshal(res)
	if err != nil {
		return out
	}
	return relabelled
}
