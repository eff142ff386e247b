//! A real Kubernetes API server for controller tests: etcd + kube-apiserver 1.20.2 (built from
//! Debian's source package by `tests/kube/build-apiserver.sh`) on free loopback ports, in a
//! temporary directory, stopped on drop.
//!
//! Authentication is a static token file: an admin token in `system:masters` plus any extra
//! users the test asks for, so tests can exercise RBAC manifests with unprivileged identities.
//! Requests go through `curl` (no HTTP client in this crate's dependencies; the controller's own
//! kube client is what the integration tests exercise, not this helper).
//!
//! A missing binary is an error that says how to build it, never a silent skip.

use std::fmt;
use std::fs;
use std::io::Write;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Environment variable naming the kube-apiserver binary (overrides the cache lookup).
pub const ENV_APISERVER: &str = "RAVEN_KUBE_APISERVER";
/// Environment variable naming the etcd binary (default: `etcd` on PATH, then /usr/bin/etcd).
pub const ENV_ETCD: &str = "RAVEN_ETCD";
/// Cache root written by `tests/kube/build-apiserver.sh`.
pub const DEFAULT_CACHE: &str = "/var/cache/raven-rs/kube";
/// Token of the built-in admin user (group `system:masters`).
pub const ADMIN_TOKEN: &str = "raven-admin-token";
/// How long to wait for `/readyz`.
const READY_TIMEOUT: Duration = Duration::from_secs(90);

const HINT: &str = "run tests/kube/build-apiserver.sh (as root) to build and cache kube-apiserver and install etcd";

/// Why the API server could not be started or used.
#[derive(Debug)]
pub struct KubeError(pub String);

impl fmt::Display for KubeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KubeError {}

pub(crate) fn err(msg: impl Into<String>) -> KubeError {
    KubeError(msg.into())
}

/// An extra user in the token file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestUser {
    /// User name as the API server sees it (e.g. `system:serviceaccount:kube-system:x`).
    pub name: String,
    /// Bearer token.
    pub token: String,
    /// Groups.
    pub groups: Vec<String>,
}

/// raven-controller's ServiceAccount (`kube-system/raven-controller`) as a token-file user.
pub fn controller_user() -> TestUser {
    TestUser {
        name: "system:serviceaccount:kube-system:raven-controller".into(),
        token: "raven-controller-token".into(),
        groups: vec![
            "system:serviceaccounts".into(),
            "system:serviceaccounts:kube-system".into(),
        ],
    }
}

/// A response from the API server.
#[derive(Clone, Debug)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// Body as text.
    pub body: String,
}

impl Response {
    /// The body parsed as JSON.
    pub fn json(&self) -> Result<serde_json::Value, KubeError> {
        serde_json::from_str(&self.body)
            .map_err(|e| err(format!("response is not JSON ({e}): {}", self.body)))
    }

    /// Whether the status is 2xx.
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// A running etcd + kube-apiserver pair. Both processes are killed on drop.
#[derive(Debug)]
pub struct KubeApiServer {
    dir: tempfile::TempDir,
    etcd: Option<Child>,
    apiserver: Option<Child>,
    /// `https://127.0.0.1:<port>`.
    pub url: String,
    /// Time from spawning etcd to `/readyz` answering 200.
    pub startup: Duration,
}

/// The kube-apiserver binary: `$RAVEN_KUBE_APISERVER`, else the newest cached build.
pub fn find_apiserver() -> Result<PathBuf, KubeError> {
    if let Some(p) = std::env::var_os(ENV_APISERVER) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(err(format!(
                "{ENV_APISERVER}={} does not exist; {HINT}",
                p.display()
            )))
        };
    }
    let bin = Path::new(DEFAULT_CACHE).join("bin");
    let mut found: Vec<PathBuf> = fs::read_dir(&bin)
        .map_err(|e| {
            err(format!(
                "no kube-apiserver cache at {} ({e}); {HINT}",
                bin.display()
            ))
        })?
        .filter_map(Result::ok)
        .map(|e| e.path().join("kube-apiserver"))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found
        .pop()
        .ok_or_else(|| err(format!("no kube-apiserver under {}; {HINT}", bin.display())))
}

/// The etcd binary: `$RAVEN_ETCD`, else `etcd` on PATH or in /usr/bin.
pub fn find_etcd() -> Result<PathBuf, KubeError> {
    if let Some(p) = std::env::var_os(ENV_ETCD) {
        return Ok(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|d| d.join("etcd"))
        .find(|p| p.is_file())
        .ok_or_else(|| err(format!("etcd not found on PATH; {HINT}")))
}

/// A loopback TCP port that was free a moment ago.
pub(crate) fn free_port() -> Result<u16, KubeError> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| err(format!("cannot bind a loopback port: {e}")))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| err(format!("local_addr: {e}")))
}

fn run_checked(cmd: &mut Command, what: &str) -> Result<(), KubeError> {
    let out = cmd
        .output()
        .map_err(|e| err(format!("{what}: cannot run: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(err(format!(
            "{what}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

impl KubeApiServer {
    /// Starts etcd and kube-apiserver with only the admin user.
    pub fn start() -> Result<KubeApiServer, KubeError> {
        Self::start_with_users(&[])
    }

    /// Starts etcd and kube-apiserver with the admin user plus `users`, and waits for
    /// `/readyz`.
    pub fn start_with_users(users: &[TestUser]) -> Result<KubeApiServer, KubeError> {
        Self::start_with_args(users, &[])
    }

    /// Like [`start_with_users`](Self::start_with_users), with extra kube-apiserver flags
    /// (e.g. `--enable-aggregator-routing=true`, which makes webhook Services resolve through
    /// their Endpoints instead of a ClusterIP that nothing routes without kube-proxy).
    pub fn start_with_args(
        users: &[TestUser],
        extra_args: &[&str],
    ) -> Result<KubeApiServer, KubeError> {
        let apiserver_bin = find_apiserver()?;
        let etcd_bin = find_etcd()?;
        let started = Instant::now();
        let dir = tempfile::Builder::new()
            .prefix("raven-kube-")
            .tempdir()
            .map_err(|e| err(format!("tempdir: {e}")))?;
        let d = dir.path();

        // Token file: token,user,uid,"group1,group2".
        let mut csv = format!("{ADMIN_TOKEN},raven-admin,raven-admin,\"system:masters\"\n");
        for (i, u) in users.iter().enumerate() {
            csv.push_str(&format!(
                "{},{},uid-{i},\"{}\"\n",
                u.token,
                u.name,
                u.groups.join(",")
            ));
        }
        fs::write(d.join("tokens.csv"), csv).map_err(|e| err(format!("tokens.csv: {e}")))?;

        // Service-account signing key (required by 1.20 for TokenRequest).
        run_checked(
            Command::new("openssl")
                .args(["genrsa", "-out"])
                .arg(d.join("sa.key"))
                .arg("2048"),
            "openssl genrsa",
        )?;
        run_checked(
            Command::new("openssl")
                .args(["rsa", "-pubout", "-in"])
                .arg(d.join("sa.key"))
                .arg("-out")
                .arg(d.join("sa.pub")),
            "openssl rsa -pubout",
        )?;

        let (client, peer, secure) = (free_port()?, free_port()?, free_port()?);
        let etcd_log = fs::File::create(d.join("etcd.log")).map_err(|e| err(e.to_string()))?;
        let etcd = Command::new(&etcd_bin)
            .arg("--data-dir")
            .arg(d.join("etcd"))
            .arg("--name=raven-test")
            .arg(format!("--listen-client-urls=http://127.0.0.1:{client}"))
            .arg(format!("--advertise-client-urls=http://127.0.0.1:{client}"))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
            ))
            .arg(format!(
                "--initial-cluster=raven-test=http://127.0.0.1:{peer}"
            ))
            .arg("--log-level=warn")
            .stdout(Stdio::null())
            .stderr(etcd_log)
            .spawn()
            .map_err(|e| err(format!("spawn {}: {e}", etcd_bin.display())))?;
        let mut server = KubeApiServer {
            dir,
            etcd: Some(etcd),
            apiserver: None,
            url: format!("https://127.0.0.1:{secure}"),
            startup: Duration::ZERO,
        };
        let d = server.dir.path().to_owned();

        let api_log = fs::File::create(d.join("apiserver.log")).map_err(|e| err(e.to_string()))?;
        let apiserver = Command::new(&apiserver_bin)
            .arg(format!("--etcd-servers=http://127.0.0.1:{client}"))
            .arg(format!("--secure-port={secure}"))
            .arg("--bind-address=127.0.0.1")
            .arg("--insecure-port=0")
            .arg("--cert-dir")
            .arg(d.join("certs"))
            .arg("--token-auth-file")
            .arg(d.join("tokens.csv"))
            .arg("--authorization-mode=RBAC")
            .arg("--service-account-key-file")
            .arg(d.join("sa.pub"))
            .arg("--service-account-signing-key-file")
            .arg(d.join("sa.key"))
            .arg("--service-account-issuer=https://kubernetes.default.svc")
            .arg("--service-cluster-ip-range=10.96.0.0/12")
            // Dual-stack is alpha in 1.20: without the gate, spec.podCIDRs keeps one entry.
            .arg("--feature-gates=IPv6DualStack=true")
            .arg("--v=1")
            .args(extra_args)
            .stdout(Stdio::null())
            .stderr(api_log)
            .spawn()
            .map_err(|e| err(format!("spawn {}: {e}", apiserver_bin.display())))?;
        server.apiserver = Some(apiserver);

        let deadline = started + READY_TIMEOUT;
        loop {
            if let Ok(r) = server.request(ADMIN_TOKEN, "GET", "/readyz", None)
                && r.status == 200
            {
                break;
            }
            for (name, child, log) in [
                ("etcd", server.etcd.as_mut(), "etcd.log"),
                ("kube-apiserver", server.apiserver.as_mut(), "apiserver.log"),
            ] {
                if let Some(c) = child
                    && let Ok(Some(st)) = c.try_wait()
                {
                    return Err(err(format!(
                        "{name} exited ({st}) during startup:\n{}",
                        log_tail(&d.join(log))
                    )));
                }
            }
            if Instant::now() > deadline {
                return Err(err(format!(
                    "kube-apiserver not ready after {READY_TIMEOUT:?}:\n{}",
                    log_tail(&d.join("apiserver.log"))
                )));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        server.startup = started.elapsed();
        Ok(server)
    }

    /// The temporary directory holding logs, keys and etcd data.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// CPU seconds used so far by (kube-apiserver, etcd), for benchmarks.
    pub fn cpu_secs(&self) -> (Option<f64>, Option<f64>) {
        let of = |c: &Option<Child>| c.as_ref().and_then(|c| proc_cpu_secs(c.id()));
        (of(&self.apiserver), of(&self.etcd))
    }

    /// Writes a kubeconfig for `token` (TLS verification off: the serving certificate is
    /// self-signed) and returns its path; for running `raven-controller --kubeconfig`.
    pub fn kubeconfig(&self, name: &str, token: &str) -> Result<PathBuf, KubeError> {
        let cfg = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "test", "cluster": {
                "server": self.url, "insecure-skip-tls-verify": true}}],
            "users": [{"name": name, "user": {"token": token}}],
            "contexts": [{"name": name, "context": {"cluster": "test", "user": name}}],
            "current-context": name,
        });
        let path = self.dir.path().join(format!("kubeconfig-{name}"));
        fs::write(&path, cfg.to_string()).map_err(|e| err(format!("kubeconfig: {e}")))?;
        Ok(path)
    }

    /// One HTTP request as the user owning `token`. `body` is JSON or YAML (sent as
    /// `application/yaml` when it does not start with `{`). PATCH bodies are merge patches.
    pub fn request(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<Response, KubeError> {
        let auth = ["-H".into(), format!("Authorization: Bearer {token}").into()];
        self.request_with(&auth, method, path, body)
    }

    /// Like [`request`](Self::request), authenticated by `auth` (curl arguments: a bearer
    /// token header, or `--cert <file>` for a client certificate).
    pub fn request_with(
        &self,
        auth: &[std::ffi::OsString],
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<Response, KubeError> {
        let content_type = match (method, body) {
            ("PATCH", _) => "application/merge-patch+json",
            (_, Some(b)) if !b.trim_start().starts_with('{') => "application/yaml",
            _ => "application/json",
        };
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "-k", "--max-time", "30", "-X", method])
            .args(auth)
            .arg("-H")
            .arg(format!("Content-Type: {content_type}"))
            .args(["-H", "Accept: application/json", "-w", "\n%{http_code}"])
            .arg(format!("{}{}", self.url, path))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if body.is_some() {
            cmd.args(["--data-binary", "@-"]).stdin(Stdio::piped());
        }
        let mut child = cmd.spawn().map_err(|e| err(format!("spawn curl: {e}")))?;
        if let Some(b) = body {
            let mut stdin = child
                .stdin
                .take()
                .ok_or_else(|| err("curl stdin not captured"))?;
            stdin
                .write_all(b.as_bytes())
                .map_err(|e| err(format!("write to curl: {e}")))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| err(format!("curl: {e}")))?;
        if !out.status.success() {
            return Err(err(format!(
                "curl {method} {path}: {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let (body, code) = text
            .rsplit_once('\n')
            .ok_or_else(|| err(format!("curl output without status line: {text}")))?;
        let status = code
            .trim()
            .parse()
            .map_err(|_| err(format!("bad status line {code:?}")))?;
        Ok(Response {
            status,
            body: body.to_owned(),
        })
    }

    /// Like [`request`](Self::request) as admin, failing on a non-2xx status.
    pub fn admin(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<Response, KubeError> {
        let r = self.request(ADMIN_TOKEN, method, path, body)?;
        if r.ok() {
            Ok(r)
        } else {
            Err(err(format!(
                "{method} {path}: HTTP {}: {}",
                r.status, r.body
            )))
        }
    }

    /// Creates a CustomResourceDefinition from a YAML manifest and waits until it is
    /// Established.
    pub fn create_crd(&self, yaml: &str) -> Result<String, KubeError> {
        let created = self
            .admin(
                "POST",
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                Some(yaml),
            )?
            .json()?;
        let name = created["metadata"]["name"]
            .as_str()
            .ok_or_else(|| err("created CRD has no name"))?
            .to_owned();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let crd = self
                .admin(
                    "GET",
                    &format!("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"),
                    None,
                )?
                .json()?;
            let established = crd["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Established" && c["status"] == "True");
            if established {
                return Ok(name);
            }
            if Instant::now() > deadline {
                return Err(err(format!("CRD {name} not Established after 30 s")));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for KubeApiServer {
    fn drop(&mut self) {
        // API server first so it does not log etcd errors while going down.
        for child in [self.apiserver.take(), self.etcd.take()]
            .into_iter()
            .flatten()
        {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The collection path of a single-object YAML manifest, from its top-level `kind:` and its
/// `metadata.namespace` (a line indented by exactly two spaces). Covers the kinds under
/// `deploy/rbac`; anything else is an error, not a guess.
pub fn manifest_path(yaml: &str) -> Result<String, KubeError> {
    let kind = yaml
        .lines()
        .find_map(|l| l.strip_prefix("kind: "))
        .map(str::trim)
        .ok_or_else(|| err("manifest has no top-level kind"))?;
    let ns = yaml
        .lines()
        .find_map(|l| l.strip_prefix("  namespace: "))
        .map(str::trim);
    let rbac = "/apis/rbac.authorization.k8s.io/v1";
    let need_ns = || ns.ok_or_else(|| err(format!("{kind} manifest without a namespace")));
    Ok(match kind {
        "ServiceAccount" => format!("/api/v1/namespaces/{}/serviceaccounts", need_ns()?),
        "ClusterRole" => format!("{rbac}/clusterroles"),
        "ClusterRoleBinding" => format!("{rbac}/clusterrolebindings"),
        "Role" => format!("{rbac}/namespaces/{}/roles", need_ns()?),
        "RoleBinding" => format!("{rbac}/namespaces/{}/rolebindings", need_ns()?),
        other => return Err(err(format!("manifest kind {other} not supported"))),
    })
}

impl KubeApiServer {
    /// Creates every `*.yaml` in `dir` (sorted by name) as admin; returns the file names.
    pub fn apply_dir(&self, dir: &Path) -> Result<Vec<String>, KubeError> {
        let mut files: Vec<PathBuf> = fs::read_dir(dir)
            .map_err(|e| err(format!("read {}: {e}", dir.display())))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            // The kustomize index of the directory is not an object.
            .filter(|p| p.file_name().is_none_or(|n| n != "kustomization.yaml"))
            .collect();
        files.sort();
        let mut names = Vec::new();
        for f in files {
            let yaml =
                fs::read_to_string(&f).map_err(|e| err(format!("read {}: {e}", f.display())))?;
            self.admin("POST", &manifest_path(&yaml)?, Some(&yaml))?;
            names.push(
                f.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            );
        }
        Ok(names)
    }

    /// Creates the Gateway CRD of `deploy/crds` and the `raven-cfg` ConfigMap with the proxy and
    /// the tunnel on.
    pub fn install_gateway_api(&self) -> Result<(), KubeError> {
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let crd = fs::read_to_string(repo.join("deploy/crds/raven.openyurt.io_gateways.yaml"))
            .map_err(|e| err(format!("read Gateway CRD: {e}")))?;
        self.create_crd(&crd)?;
        let cfg = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "raven-cfg", "namespace": "kube-system"},
            "data": {"enable-l7-proxy": "true", "enable-l3-tunnel": "true"}});
        self.admin(
            "POST",
            "/api/v1/namespaces/kube-system/configmaps",
            Some(&cfg.to_string()),
        )
        .map(drop)
    }

    /// A token of raven-node's ServiceAccount (`kube-system/raven-node`, from
    /// `deploy/rbac/node`) from the TokenRequest API, bound to a new pod `pod` on `node` (never
    /// run: there is no kubelet), as the DaemonSet's projected token is; `pod` `None`: a token
    /// bound to no pod.
    pub fn raven_node_token(&self, pod: Option<(&str, &str)>) -> Result<String, KubeError> {
        const NS: &str = "/api/v1/namespaces/kube-system";
        let mut spec = serde_json::json!({"expirationSeconds": 3600});
        if let Some((pod, node)) = pod {
            let p = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": pod, "namespace": "kube-system"},
                "spec": {"nodeName": node, "serviceAccountName": "raven-node",
                    "automountServiceAccountToken": false,
                    "containers": [{"name": "raven-node", "image": "raven-node:test"}]}});
            let created = self
                .admin("POST", &format!("{NS}/pods"), Some(&p.to_string()))?
                .json()?;
            spec["boundObjectRef"] = serde_json::json!({"kind": "Pod", "apiVersion": "v1",
                "name": pod, "uid": created["metadata"]["uid"]});
        }
        let tr = serde_json::json!({"apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest", "spec": spec});
        let answer = self
            .admin(
                "POST",
                &format!("{NS}/serviceaccounts/raven-node/token"),
                Some(&tr.to_string()),
            )?
            .json()?;
        answer["status"]["token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| err(format!("TokenRequest answered without a token: {answer}")))
    }

    /// GET as admin, parsed; `None` on 404.
    pub fn get_json(&self, path: &str) -> Result<Option<serde_json::Value>, KubeError> {
        let r = self.request(ADMIN_TOKEN, "GET", path, None)?;
        match r.status {
            404 => Ok(None),
            s if (200..300).contains(&s) => r.json().map(Some),
            s => Err(err(format!("GET {path}: HTTP {s}: {}", r.body))),
        }
    }
}

/// Polls `check` every 100 ms until it returns `Some` or `timeout` passes; the error carries
/// `what` and the last observation.
pub fn wait_for<T>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<Option<T>, String>,
) -> Result<(T, Duration), KubeError> {
    let start = Instant::now();
    let mut last = String::new();
    loop {
        match check() {
            Ok(Some(v)) => return Ok((v, start.elapsed())),
            Ok(None) => {}
            Err(e) => last = e,
        }
        if start.elapsed() > timeout {
            return Err(err(format!(
                "timed out after {timeout:?} waiting for {what}; last: {last}"
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub use crate::controller_process::{ControllerProcess, find_controller, proc_cpu_secs};
