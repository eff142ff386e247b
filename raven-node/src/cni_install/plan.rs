//! The pure CNI-configuration planner: the files of the CNI configuration directory in, the
//! one file we want (or want gone) out. No I/O, table-tested.
//!
//! # Why a separate, lower-sorting file
//!
//! Container runtimes (containerd's CRI plugin through go-cni, CRI-O through ocicni, and
//! libcni's `ConfFiles`) list `*.conf`, `*.conflist` and `*.json` in the directory, sort the
//! names as byte strings and use the **first** one. kube-flannel's `install-cni` init container
//! copies its ConfigMap onto `10-flannel.conflist` on every Flannel (re)start with `cp -f`,
//! which truncates and rewrites the file in place. Editing Flannel's file would therefore be
//! undone by every Flannel restart, and would race with that non-atomic rewrite.
//!
//! Instead we write [`OUR_FILE`] (`05-raven.conflist`), which sorts before `10-*`, derived from
//! the first foreign configuration: the same `name` and `cniVersion`, every plugin the operator
//! configured in the same order, and `raven-cni` appended last (Flannel → portmap → … →
//! `raven-cni`; `raven-cni` only adds pod routes, so it belongs after every plugin that
//! creates or changes interfaces). Consequences:
//!
//! - Flannel's file is never modified: uninstalling is deleting our file, after which the
//!   runtime reads Flannel's file again, byte for byte what Flannel wrote (the original chain).
//! - Keeping the network `name` keeps libcni's result cache, host-local's reservations and
//!   raven-cni's records keyed the same before, during and after an install, so a pod added
//!   under one file is deleted cleanly under the other.
//! - While Flannel rewrites its file, the runtime reads our (complete) file; the daemon sees the
//!   change, waits until Flannel's file parses again, and re-derives ours (a half-written source
//!   is an error that leaves our file untouched).
//! - A foreign configuration sorting before ours (e.g. `00-multus.conf`) would make the runtime
//!   ignore us; that is reported as an error rather than silently having no effect.

use serde_json::{Map, Value};

/// The file we own in the CNI configuration directory.
pub const OUR_FILE: &str = "05-raven.conflist";

/// The `type` of our plugin entry.
pub const PLUGIN_TYPE: &str = "raven-cni";

/// Spec versions that support chaining (prevResult); `raven-cni` accepts exactly these.
const CHAINING_VERSIONS: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// One file of the configuration directory, as observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfFile {
    /// File name (no directory).
    pub name: String,
    /// Its bytes.
    pub content: Vec<u8>,
}

/// What the planner needs besides the directory.
#[derive(Clone, Debug, PartialEq)]
pub struct PluginSettings {
    /// The `raven-cni` plugin object appended to the chain (must have `"type": "raven-cni"`).
    pub plugin: Map<String, Value>,
}

/// The desired state of [`OUR_FILE`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Desired {
    /// Write these bytes (they differ from what is there, or the file is missing).
    Write {
        /// The foreign file it was derived from.
        source: String,
        /// The complete conflist.
        content: Vec<u8>,
    },
    /// Our file already holds exactly the derived content.
    UpToDate {
        /// The foreign file it was derived from.
        source: String,
    },
    /// There is no foreign configuration to chain after; our file must not exist (a runtime
    /// must not use a chain whose network its owner removed).
    Absent,
}

/// Why no plan could be made; nothing must be written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The configuration file the runtime would use is not a usable CNI configuration.
    #[error("{file}: not a usable CNI configuration: {reason}")]
    BadSource {
        /// The file.
        file: String,
        /// Why.
        reason: String,
    },
    /// A foreign file sorts before ours, so the runtime would never read ours.
    #[error(
        "{file} sorts before {OUR_FILE}, so the container runtime would use it and ignore raven-cni; \
         rename it or chain raven-cni in it yourself"
    )]
    ForeignFirst {
        /// The file.
        file: String,
    },
    /// Our plugin settings are not a raven-cni plugin object.
    #[error("invalid raven-cni plugin settings: {0}")]
    BadSettings(String),
}

/// Whether the runtime loads this file name at all (libcni's extension filter).
pub fn is_config_name(name: &str) -> bool {
    [".conf", ".conflist", ".json"]
        .iter()
        .any(|ext| name.len() > ext.len() && name.ends_with(ext))
}

/// Plans the install: derive [`OUR_FILE`] from the first foreign configuration in `files`
/// (any order; sorted here as the runtime sorts them).
pub fn plan_install(files: &[ConfFile], settings: &PluginSettings) -> Result<Desired, PlanError> {
    if settings.plugin.get("type").and_then(Value::as_str) != Some(PLUGIN_TYPE) {
        return Err(PlanError::BadSettings(format!(
            "the plugin object must have \"type\": \"{PLUGIN_TYPE}\""
        )));
    }
    let mut configs: Vec<&ConfFile> = files.iter().filter(|f| is_config_name(&f.name)).collect();
    configs.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    let ours = configs.iter().find(|f| f.name == OUR_FILE);
    let Some(source) = configs.iter().find(|f| f.name != OUR_FILE) else {
        return Ok(Desired::Absent);
    };
    if source.name.as_bytes() < OUR_FILE.as_bytes() {
        return Err(PlanError::ForeignFirst {
            file: source.name.clone(),
        });
    }
    let list = as_list(source).map_err(|reason| PlanError::BadSource {
        file: source.name.clone(),
        reason,
    })?;
    let content = derive(list, settings);
    let source = source.name.clone();
    if ours.is_some_and(|f| f.content == content) {
        Ok(Desired::UpToDate { source })
    } else {
        Ok(Desired::Write { source, content })
    }
}

/// Plans the uninstall: whether our file is present (then it must go). Foreign files are
/// never touched, so removing ours is the whole restoration.
pub fn plan_uninstall(files: &[ConfFile]) -> bool {
    files.iter().any(|f| f.name == OUR_FILE)
}

/// The source as a network configuration list (a single-plugin `.conf` is up-converted the way
/// libcni does).
fn as_list(file: &ConfFile) -> Result<Map<String, Value>, String> {
    let value: Value = serde_json::from_slice(&file.content).map_err(|e| {
        if file.content.iter().all(u8::is_ascii_whitespace) {
            "the file is empty (being rewritten?)".to_owned()
        } else {
            format!("invalid JSON: {e}")
        }
    })?;
    let Value::Object(mut obj) = value else {
        return Err("the top level is not a JSON object".to_owned());
    };
    match obj.get("name") {
        Some(Value::String(s)) if !s.is_empty() => {}
        _ => return Err("missing or empty \"name\"".to_owned()),
    }
    let version = match obj.get("cniVersion") {
        Some(Value::String(v)) => v.clone(),
        _ => return Err("missing \"cniVersion\"".to_owned()),
    };
    if !CHAINING_VERSIONS.contains(&version.as_str()) {
        return Err(format!(
            "cniVersion {version:?} cannot chain raven-cni (supported: {})",
            CHAINING_VERSIONS.join(", ")
        ));
    }
    if !obj.contains_key("plugins") {
        if file.name.ends_with(".conflist") {
            return Err("missing \"plugins\"".to_owned());
        }
        // A single-plugin configuration: the plugin is everything but the list-level keys.
        let mut plugin = obj.clone();
        for key in [
            "name",
            "cniVersion",
            "cniVersions",
            "disableCheck",
            "disableGC",
        ] {
            plugin.remove(key);
        }
        obj.retain(|k, _| k == "name" || k == "cniVersion");
        obj.insert(
            "plugins".to_owned(),
            Value::Array(vec![Value::Object(plugin)]),
        );
    }
    let Some(Value::Array(plugins)) = obj.get("plugins") else {
        return Err("\"plugins\" is not a list".to_owned());
    };
    if plugins.is_empty() {
        return Err("\"plugins\" is empty".to_owned());
    }
    for (i, p) in plugins.iter().enumerate() {
        match p.get("type") {
            Some(Value::String(t)) if !t.is_empty() => {}
            _ => return Err(format!("plugins[{i}] has no \"type\"")),
        }
    }
    Ok(obj)
}

/// The derived list: every foreign plugin except earlier `raven-cni` entries (so a source that
/// already chains us is not chained twice), then ours. Deterministic bytes: keys sorted (the
/// JSON map is ordered), pretty-printed, trailing newline.
fn derive(mut list: Map<String, Value>, settings: &PluginSettings) -> Vec<u8> {
    let mut plugins: Vec<Value> = match list.remove("plugins") {
        Some(Value::Array(p)) => p,
        _ => Vec::new(),
    };
    plugins.retain(|p| p.get("type").and_then(Value::as_str) != Some(PLUGIN_TYPE));
    plugins.push(Value::Object(settings.plugin.clone()));
    list.insert("plugins".to_owned(), Value::Array(plugins));
    let mut out = serde_json::to_vec_pretty(&Value::Object(list))
        .expect("a serde_json::Value always serializes");
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn settings() -> PluginSettings {
        let Value::Object(plugin) = json!({
            "type": "raven-cni",
            "nodeStateFile": "/run/raven/node-state.json",
            "dataDir": "/var/lib/cni/raven",
        }) else {
            unreachable!()
        };
        PluginSettings { plugin }
    }

    fn file(name: &str, v: &Value) -> ConfFile {
        ConfFile {
            name: name.to_owned(),
            content: serde_json::to_vec(v).unwrap(),
        }
    }

    fn raw(name: &str, s: &str) -> ConfFile {
        ConfFile {
            name: name.to_owned(),
            content: s.as_bytes().to_vec(),
        }
    }

    fn flannel() -> Value {
        json!({"name": "cbr0", "cniVersion": "0.3.1", "plugins": [
            {"type": "flannel", "delegate": {"hairpinMode": true, "isDefaultGateway": true}},
            {"type": "portmap", "capabilities": {"portMappings": true}}]})
    }

    fn written(d: Desired) -> (String, Value) {
        match d {
            Desired::Write { source, content } => {
                assert!(content.ends_with(b"\n"));
                (source, serde_json::from_slice(&content).unwrap())
            }
            other => panic!("expected a write, got {other:?}"),
        }
    }

    fn types(v: &Value) -> Vec<String> {
        v["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["type"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn derives_flannel_portmap_raven_keeping_everything() {
        let (source, list) =
            written(plan_install(&[file("10-flannel.conflist", &flannel())], &settings()).unwrap());
        assert_eq!(source, "10-flannel.conflist");
        assert_eq!(types(&list), ["flannel", "portmap", "raven-cni"]);
        assert_eq!(list["name"], "cbr0");
        assert_eq!(list["cniVersion"], "0.3.1");
        // Operator keys kept verbatim.
        assert_eq!(list["plugins"][0]["delegate"]["hairpinMode"], true);
        assert_eq!(list["plugins"][1]["capabilities"]["portMappings"], true);
        assert_eq!(list["plugins"][2]["dataDir"], "/var/lib/cni/raven");
    }

    #[test]
    fn table() {
        let k3s = json!({"name": "cbr0", "cniVersion": "1.0.0", "disableCheck": true, "plugins": [
            {"type": "flannel", "delegate": {"forceAddress": true}},
            {"type": "portmap", "capabilities": {"portMappings": true}},
            {"type": "bandwidth", "capabilities": {"bandwidth": true}}]});
        let mut already = flannel();
        already["plugins"]
            .as_array_mut()
            .unwrap()
            .insert(1, json!({"type": "raven-cni", "dataDir": "/old"}));
        let single = json!({"name": "mynet", "cniVersion": "0.4.0", "type": "bridge",
                            "bridge": "cni0", "ipam": {"type": "host-local"}});
        struct Case {
            what: &'static str,
            files: Vec<ConfFile>,
            types: Result<Vec<&'static str>, &'static str>,
            source: &'static str,
        }
        let cases = [
            Case {
                what: "k3s: bandwidth kept, list keys kept",
                files: vec![file("10-flannel.conflist", &k3s)],
                types: Ok(vec!["flannel", "portmap", "bandwidth", "raven-cni"]),
                source: "10-flannel.conflist",
            },
            Case {
                what: "source already chains raven-cni: not twice, our settings win",
                files: vec![file("10-flannel.conflist", &already)],
                types: Ok(vec!["flannel", "portmap", "raven-cni"]),
                source: "10-flannel.conflist",
            },
            Case {
                what: "single-plugin .conf is up-converted",
                files: vec![file("20-bridge.conf", &single)],
                types: Ok(vec!["bridge", "raven-cni"]),
                source: "20-bridge.conf",
            },
            Case {
                what: "the lowest-sorting foreign file is the source; others ignored",
                files: vec![
                    raw("99-garbage.conflist", "{not json"),
                    file("10-flannel.conflist", &flannel()),
                    raw("README", "not a config"),
                    raw(".05-raven.conflist.tmp", "half"),
                ],
                types: Ok(vec!["flannel", "portmap", "raven-cni"]),
                source: "10-flannel.conflist",
            },
            Case {
                what: "garbage source",
                files: vec![raw("10-flannel.conflist", "{\"name\": \"cbr0\", \"plug")],
                types: Err("10-flannel.conflist: not a usable CNI configuration: invalid JSON"),
                source: "",
            },
            Case {
                what: "empty source (mid-rewrite)",
                files: vec![raw("10-flannel.conflist", "")],
                types: Err("the file is empty"),
                source: "",
            },
            Case {
                what: "not an object",
                files: vec![raw("10-flannel.conflist", "[1]")],
                types: Err("not a JSON object"),
                source: "",
            },
            Case {
                what: "no name",
                files: vec![raw(
                    "10-x.conflist",
                    r#"{"cniVersion":"0.3.1","plugins":[{"type":"a"}]}"#,
                )],
                types: Err("\"name\""),
                source: "",
            },
            Case {
                what: "pre-chaining version",
                files: vec![raw(
                    "10-x.conflist",
                    r#"{"name":"n","cniVersion":"0.2.0","plugins":[{"type":"a"}]}"#,
                )],
                types: Err("cannot chain"),
                source: "",
            },
            Case {
                what: "conflist without plugins",
                files: vec![raw("10-x.conflist", r#"{"name":"n","cniVersion":"0.3.1"}"#)],
                types: Err("missing \"plugins\""),
                source: "",
            },
            Case {
                what: "empty plugins",
                files: vec![raw(
                    "10-x.conflist",
                    r#"{"name":"n","cniVersion":"0.3.1","plugins":[]}"#,
                )],
                types: Err("is empty"),
                source: "",
            },
            Case {
                what: "plugin without type",
                files: vec![raw(
                    "10-x.conflist",
                    r#"{"name":"n","cniVersion":"0.3.1","plugins":[{"type":"a"},{}]}"#,
                )],
                types: Err("plugins[1] has no \"type\""),
                source: "",
            },
            Case {
                what: "foreign file before ours",
                files: vec![
                    file("00-multus.conf", &single),
                    file("10-flannel.conflist", &flannel()),
                ],
                types: Err("00-multus.conf sorts before 05-raven.conflist"),
                source: "",
            },
        ];
        for c in cases {
            let got = plan_install(&c.files, &settings());
            match (c.types, got) {
                (Ok(want), Ok(d)) => {
                    let (source, list) = written(d);
                    assert_eq!(types(&list), want, "{}", c.what);
                    assert_eq!(source, c.source, "{}", c.what);
                }
                (Err(want), Err(e)) => {
                    assert!(e.to_string().contains(want), "{}: {e}", c.what)
                }
                (want, got) => panic!("{}: wanted {want:?}, got {got:?}", c.what),
            }
        }
    }

    #[test]
    fn idempotent_and_follows_source_changes() {
        let mut files = vec![file("10-flannel.conflist", &flannel())];
        let Desired::Write { content, .. } = plan_install(&files, &settings()).unwrap() else {
            panic!("first plan writes");
        };
        files.push(ConfFile {
            name: OUR_FILE.to_owned(),
            content: content.clone(),
        });
        assert_eq!(
            plan_install(&files, &settings()).unwrap(),
            Desired::UpToDate {
                source: "10-flannel.conflist".into()
            }
        );
        // Flannel rewrote its file with another MTU: ours follows.
        let mut changed = flannel();
        changed["plugins"][0]["delegate"]["mtu"] = json!(1400);
        files[0] = file("10-flannel.conflist", &changed);
        let (_, list) = written(plan_install(&files, &settings()).unwrap());
        assert_eq!(list["plugins"][0]["delegate"]["mtu"], 1400);
        // Our own file is never taken as the source, whatever it holds.
        let ours_only = vec![ConfFile {
            name: OUR_FILE.to_owned(),
            content,
        }];
        assert_eq!(
            plan_install(&ours_only, &settings()).unwrap(),
            Desired::Absent
        );
        assert_eq!(plan_install(&[], &settings()).unwrap(), Desired::Absent);
    }

    #[test]
    fn uninstall_removes_only_ours() {
        assert!(!plan_uninstall(&[file("10-flannel.conflist", &flannel())]));
        assert!(plan_uninstall(&[
            file("10-flannel.conflist", &flannel()),
            raw(OUR_FILE, "{}"),
        ]));
    }

    #[test]
    fn settings_must_be_ours_and_names_filter_like_libcni() {
        let bad = PluginSettings { plugin: Map::new() };
        assert!(matches!(
            plan_install(&[], &bad),
            Err(PlanError::BadSettings(_))
        ));
        assert!(is_config_name("10-flannel.conflist"));
        assert!(is_config_name("a.conf") && is_config_name("a.json"));
        assert!(!is_config_name(".conf") && !is_config_name("a.conflist.tmp"));
        assert!(!is_config_name("README"));
    }
}
