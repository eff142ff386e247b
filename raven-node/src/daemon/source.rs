//! Standalone Gateway source: every `*.yaml`, `*.yml` and `*.json` file of one directory.
//!
//! Each file holds one or more Gateway objects (multi-document YAML, a JSON object, or a
//! `List`/`GatewayList` with `items`), status included, in `raven.openyurt.io/v1beta1` or
//! `v1alpha1` (converted to v1beta1 with the API crate's conversion). The webhook defaults are
//! applied because no API server ran them. A bad file or document is reported precisely (file,
//! document index, reason) and left out; every other object still counts.
//!
//! Change detection polls: [`DirWatcher::poll`] reads the directory every tick and compares a
//! digest of the names and contents. Why polling rather than inotify: the directory holds a
//! handful of small files, so reading them every second costs microseconds; polling sees every
//! way a file can change (editors that write a temporary file and rename it, Kubernetes
//! ConfigMap volumes that swap a `..data` symlink, files on network file systems) without
//! re-arming watches, and it needs no extra dependency. The latency it adds is at most one
//! poll interval (1 s by default, configurable).

use std::collections::hash_map::DefaultHasher;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use raven_api::gateway::conversion::convert_value;
use raven_api::gateway::defaults::default_gateway;
use raven_api::gateway::v1beta1::Gateway;
use raven_api::wellknown::{API_VERSION_V1ALPHA1, API_VERSION_V1BETA1, GATEWAY_KIND};
use serde::Deserialize;
use serde_json::Value;

/// Largest Gateway file we read; anything bigger is refused rather than loaded into memory.
pub const MAX_FILE_BYTES: u64 = 16 << 20;

/// One problem with one file (or one document in it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileError {
    /// The file.
    pub path: PathBuf,
    /// Zero-based document index inside the file, when the problem concerns one document.
    pub document: Option<usize>,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.document {
            Some(i) => write!(
                f,
                "{} (document {}): {}",
                self.path.display(),
                i,
                self.reason
            ),
            None => write!(f, "{}: {}", self.path.display(), self.reason),
        }
    }
}

/// The Gateways of the directory at one moment, with the problems found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// Every usable Gateway, in file-name then document order.
    pub gateways: Vec<Gateway>,
    /// Every file or document left out, in the same order.
    pub errors: Vec<FileError>,
}

/// Format of a Gateway file, from its extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Yaml,
    Json,
}

fn format_of(path: &Path) -> Option<Format> {
    match path.extension()?.to_str()? {
        "yaml" | "yml" => Some(Format::Yaml),
        "json" => Some(Format::Json),
        _ => None,
    }
}

/// Whether a directory entry is a Gateway file: a known extension and not hidden (editors'
/// swap files and the ConfigMap `..data` machinery start with a dot).
fn is_gateway_file(path: &Path) -> bool {
    let hidden = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_none_or(|n| n.starts_with('.'));
    !hidden && format_of(path).is_some()
}

/// The Gateway files of `dir` with their contents, sorted by name. A file that cannot be read
/// is returned as an error entry; a missing or unreadable directory is an error.
/// Gateway files with their contents (or why they could not be read).
type FileContents = Vec<(PathBuf, Result<Vec<u8>, String>)>;

fn read_files(dir: &Path) -> std::io::Result<FileContents> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| is_gateway_file(p))
        .collect();
    paths.sort();
    Ok(paths
        .into_iter()
        .map(|p| {
            let content = read_bounded(&p);
            (p, content)
        })
        .collect())
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot stat: {e}"))?;
    if !meta.is_file() {
        return Err("not a regular file".to_owned());
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!(
            "{} bytes is more than the {MAX_FILE_BYTES}-byte limit",
            meta.len()
        ));
    }
    std::fs::read(path).map_err(|e| format!("cannot read: {e}"))
}

/// Parses one file's content into Gateways; problems are appended to `errors`.
pub fn parse_file(path: &Path, bytes: &[u8], errors: &mut Vec<FileError>) -> Vec<Gateway> {
    let err = |document, reason: String| FileError {
        path: path.to_path_buf(),
        document,
        reason,
    };
    let Some(format) = format_of(path) else {
        errors.push(err(None, "unknown extension".to_owned()));
        return Vec::new();
    };
    let documents: Vec<Result<Value, String>> = match format {
        Format::Json => vec![serde_json::from_slice(bytes).map_err(|e| format!("JSON: {e}"))],
        Format::Yaml => {
            // After a syntax error the document stream cannot resynchronise (and keeps
            // yielding the error): stop at the first one.
            let mut docs = Vec::new();
            for doc in serde_yaml::Deserializer::from_slice(bytes) {
                let parsed = Value::deserialize(doc).map_err(|e| format!("YAML: {e}"));
                let failed = parsed.is_err();
                docs.push(parsed);
                if failed {
                    break;
                }
            }
            docs
        }
    };
    let mut out = Vec::new();
    for (i, doc) in documents.into_iter().enumerate() {
        match doc {
            // An empty YAML document (`---` at the end, a comment-only file) holds nothing.
            Ok(Value::Null) => {}
            Ok(value) => match objects(value) {
                Ok(items) => {
                    for (j, item) in items.into_iter().enumerate() {
                        match gateway_from_value(item) {
                            Ok(gw) => out.push(gw),
                            Err(reason) => {
                                errors.push(err(Some(i), format!("item {j}: {reason}")));
                            }
                        }
                    }
                }
                Err(ObjectsError::NotList(value)) => match gateway_from_value(value) {
                    Ok(gw) => out.push(gw),
                    Err(reason) => errors.push(err(Some(i), reason)),
                },
                Err(ObjectsError::Bad(reason)) => errors.push(err(Some(i), reason)),
            },
            Err(reason) => errors.push(err(Some(i), reason)),
        }
    }
    out
}

enum ObjectsError {
    /// Not a list: the value itself is the object.
    NotList(Value),
    /// A list without a usable `items` array.
    Bad(String),
}

/// Unpacks `kind: List` / `kind: GatewayList` (what `kubectl get -o yaml` prints).
fn objects(value: Value) -> Result<Vec<Value>, ObjectsError> {
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if kind != "List" && kind != "GatewayList" {
        return Err(ObjectsError::NotList(value));
    }
    match value {
        Value::Object(mut map) => match map.remove("items") {
            Some(Value::Array(items)) => Ok(items),
            Some(Value::Null) | None => Ok(Vec::new()),
            Some(_) => Err(ObjectsError::Bad(format!("{kind}: items is not a list"))),
        },
        _ => Err(ObjectsError::Bad(format!("{kind} is not an object"))),
    }
}

/// One object → a defaulted v1beta1 Gateway, or the reason it is not one.
fn gateway_from_value(value: Value) -> Result<Gateway, String> {
    if !value.is_object() {
        return Err("not an object".to_owned());
    }
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if kind != GATEWAY_KIND {
        return Err(format!("kind {kind:?} is not {GATEWAY_KIND:?}"));
    }
    let api_version = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let value = match api_version.as_str() {
        API_VERSION_V1BETA1 => value,
        API_VERSION_V1ALPHA1 => {
            convert_value(&value, API_VERSION_V1BETA1)
                .map_err(|e| format!("converting from {API_VERSION_V1ALPHA1}: {e}"))?
                .object
        }
        other => {
            return Err(format!(
                "apiVersion {other:?} is neither {API_VERSION_V1BETA1:?} nor \
                 {API_VERSION_V1ALPHA1:?}"
            ));
        }
    };
    let mut gw: Gateway =
        serde_json::from_value(value).map_err(|e| format!("not a valid Gateway: {e}"))?;
    if gw.name().is_empty() {
        return Err("metadata.name is empty".to_owned());
    }
    default_gateway(&mut gw);
    Ok(gw)
}

/// Reads and parses the whole directory.
pub fn load_dir(dir: &Path) -> std::io::Result<Snapshot> {
    Ok(snapshot_of(read_files(dir)?))
}

fn snapshot_of(files: FileContents) -> Snapshot {
    let mut snapshot = Snapshot::default();
    for (path, content) in files {
        match content {
            Ok(bytes) => {
                let gws = parse_file(&path, &bytes, &mut snapshot.errors);
                snapshot.gateways.extend(gws);
            }
            Err(reason) => snapshot.errors.push(FileError {
                path,
                document: None,
                reason,
            }),
        }
    }
    snapshot
}

/// Polls a directory and reports a new [`Snapshot`] only when its content changed.
#[derive(Debug)]
pub struct DirWatcher {
    dir: PathBuf,
    digest: Option<u64>,
}

/// What one poll found.
#[derive(Debug)]
pub enum Poll {
    /// Same names and contents as last time.
    Unchanged,
    /// Something changed (or this is the first poll).
    Changed(Snapshot),
    /// The directory itself cannot be read (missing, permissions): the caller keeps the last
    /// snapshot and reports this.
    DirError(String),
}

impl DirWatcher {
    /// Watches `dir`; the first poll always reports `Changed` (or `DirError`).
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            digest: None,
        }
    }

    /// The watched directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads the directory; parses only when the digest of names and contents changed.
    pub fn poll(&mut self) -> Poll {
        let files = match read_files(&self.dir) {
            Ok(f) => f,
            Err(e) => {
                // Forget the digest so that the directory reappearing counts as a change.
                self.digest = None;
                return Poll::DirError(format!("{}: {e}", self.dir.display()));
            }
        };
        let mut h = DefaultHasher::new();
        for (path, content) in &files {
            path.hash(&mut h);
            content.hash(&mut h);
        }
        let digest = h.finish();
        if self.digest == Some(digest) {
            return Poll::Unchanged;
        }
        self.digest = Some(digest);
        Poll::Changed(snapshot_of(files))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GW_JSON: &str = r#"{"apiVersion":"raven.openyurt.io/v1beta1","kind":"Gateway",
        "metadata":{"name":"gw-a"},
        "spec":{"endpoints":[{"nodeName":"a1","type":"tunnel","publicIP":"1.2.3.4"}],
                "tunnelConfig":{"Replicas":1},"proxyConfig":{"Replicas":0}},
        "status":{"nodes":[{"nodeName":"a1","privateIP":"10.0.0.1","subnets":["10.244.0.0/24"]}],
                  "activeEndpoints":[{"nodeName":"a1","type":"tunnel","publicIP":"1.2.3.4"}]}}"#;

    fn parse(name: &str, text: &str) -> (Vec<Gateway>, Vec<FileError>) {
        let mut errors = Vec::new();
        let gws = parse_file(Path::new(name), text.as_bytes(), &mut errors);
        (gws, errors)
    }

    fn names(gws: &[Gateway]) -> Vec<&str> {
        gws.iter().map(Gateway::name).collect()
    }

    #[test]
    fn json_object_with_status_and_defaults() {
        let (gws, errors) = parse("a.json", GW_JSON);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(names(&gws), ["gw-a"]);
        let status = gws[0].status.as_ref().expect("status kept");
        assert_eq!(status.nodes[0].private_ip, "10.0.0.1");
        // The webhook default for a tunnel endpoint's port was applied.
        assert_eq!(gws[0].spec.endpoints[0].port, 4500);
    }

    #[test]
    fn multi_document_yaml_keeps_good_documents() {
        let text = "\
apiVersion: raven.openyurt.io/v1beta1
kind: Gateway
metadata: {name: gw-1}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: nope}
---
apiVersion: raven.openyurt.io/v1beta1
kind: Gateway
metadata: {name: gw-2}
status:
  nodes: [{nodeName: n, privateIP: 10.0.0.9, subnets: [10.9.0.0/24]}]
---
";
        let (gws, errors) = parse("multi.yaml", text);
        assert_eq!(names(&gws), ["gw-1", "gw-2"]);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].document, Some(1));
        assert!(errors[0].reason.contains("ConfigMap"), "{}", errors[0]);
    }

    #[test]
    fn list_kind_is_unpacked() {
        let text = format!(r#"{{"apiVersion":"v1","kind":"List","items":[{GW_JSON}, 3]}}"#);
        let (gws, errors) = parse("list.json", &text);
        assert_eq!(names(&gws), ["gw-a"]);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].reason.starts_with("item 1:"), "{}", errors[0]);
    }

    #[test]
    fn v1alpha1_is_converted() {
        let text = r#"{"apiVersion":"raven.openyurt.io/v1alpha1","kind":"Gateway",
            "metadata":{"name":"old"},
            "spec":{"endpoints":[{"nodeName":"n1","underNAT":true}]},
            "status":{"nodes":[{"nodeName":"n1","privateIP":"10.0.0.1","subnets":["10.1.0.0/24"]}],
                      "activeEndpoint":{"nodeName":"n1","underNAT":true}}}"#;
        let (gws, errors) = parse("old.json", text);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(names(&gws), ["old"]);
        let active = gws[0].active_tunnel_endpoint().expect("active endpoint");
        assert_eq!(active.node_name, "n1");
        assert!(active.under_nat);
    }

    #[test]
    fn bad_inputs_are_precise() {
        let cases: &[(&str, &str, &str)] = &[
            ("a.json", "{not json", "JSON:"),
            ("a.json", "[1,2]", "not an object"),
            (
                "a.json",
                r#"{"apiVersion":"raven.openyurt.io/v2","kind":"Gateway","metadata":{"name":"x"}}"#,
                "apiVersion \"raven.openyurt.io/v2\"",
            ),
            (
                "a.json",
                r#"{"apiVersion":"raven.openyurt.io/v1beta1","kind":"Gateway","metadata":{}}"#,
                "metadata.name is empty",
            ),
            (
                "a.json",
                r#"{"apiVersion":"raven.openyurt.io/v1beta1","kind":"Gateway","metadata":{"name":"x"},"status":{"nodes":"no"}}"#,
                "not a valid Gateway",
            ),
            ("a.yaml", "key: [unclosed", "YAML:"),
        ];
        for (name, text, want) in cases {
            let (gws, errors) = parse(name, text);
            assert!(gws.is_empty(), "{text}");
            assert_eq!(errors.len(), 1, "{text}: {errors:?}");
            let msg = errors[0].to_string();
            assert!(msg.contains(want), "{text}: {msg}");
            assert!(msg.starts_with(name), "{msg}");
        }
        // Comment-only YAML holds nothing and is no error.
        assert_eq!(parse("c.yml", "# nothing\n"), (Vec::new(), Vec::new()));
    }

    #[test]
    fn watcher_reports_changes_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = DirWatcher::new(dir.path());
        match w.poll() {
            Poll::Changed(s) => assert_eq!(s, Snapshot::default()),
            other => panic!("first poll: {other:?}"),
        }
        assert!(matches!(w.poll(), Poll::Unchanged));
        std::fs::write(dir.path().join("a.json"), GW_JSON).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        std::fs::write(dir.path().join(".a.json.swp"), "ignored").unwrap();
        std::fs::write(dir.path().join("bad.yaml"), "kind: [").unwrap();
        match w.poll() {
            Poll::Changed(s) => {
                assert_eq!(names(&s.gateways), ["gw-a"]);
                assert_eq!(s.errors.len(), 1);
                assert!(s.errors[0].path.ends_with("bad.yaml"));
            }
            other => panic!("after write: {other:?}"),
        }
        assert!(matches!(w.poll(), Poll::Unchanged));
        // Same length, different content: still a change.
        std::fs::write(dir.path().join("a.json"), GW_JSON.replace("gw-a", "gw-b")).unwrap();
        assert!(matches!(w.poll(), Poll::Changed(_)));
        std::fs::remove_file(dir.path().join("bad.yaml")).unwrap();
        match w.poll() {
            Poll::Changed(s) => assert!(s.errors.is_empty()),
            other => panic!("after remove: {other:?}"),
        }
        let gone = dir.path().join("missing");
        let mut w = DirWatcher::new(&gone);
        assert!(matches!(w.poll(), Poll::DirError(m) if m.contains("missing")));
    }
}
