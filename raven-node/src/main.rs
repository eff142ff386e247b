//! `raven-node`: the per-node daemon (DaemonSet, or a plain process in standalone mode).
//!
//! `raven-node run` reconciles the node from Gateway objects and publishes the node state read
//! by `raven-cni`; `raven-node cleanup` removes everything Raven owns on the node. Every flag
//! has an environment variable so a DaemonSet can configure it without a command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use ipnetwork::IpNetwork;
use raven_api::nodestate::{DEFAULT_CNI_DATA_DIR, DEFAULT_NODE_STATE_FILE};
use raven_node::daemon::engine::Timing;
use raven_node::daemon::proxy_certs::CsrSettings;
use raven_node::daemon::proxy_front::FrontSettings;
use raven_node::daemon::{Config, SourceConfig};
use raven_node::plan::{self, Options, TunnelDriver};
use raven_node::proxy::tunnel::ProxyConfig;
use raven_node::proxy::tunnel::certs::CertPaths;
use raven_node::tunnel::{DriverChoice, DriverKind};

/// Raven node daemon: cross-domain tunnels and per-pod routes for one node.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon until SIGTERM/SIGINT (the data plane stays in place on stop).
    Run(Common),
    /// Remove everything Raven owns on this node (tunnel, raven0, routes, rules, node state,
    /// per-pod routes) and nothing else.
    Cleanup(Common),
    /// Print this node's tunnel public key (creating the persisted key if needed), for
    /// `config.publicKey` of its Gateway endpoint in standalone mode.
    PublicKey {
        /// State directory holding the key.
        #[arg(long, env = "RAVEN_STATE_DIR", default_value = "/var/lib/raven")]
        state_dir: PathBuf,
    },
    /// Show what the running daemon does (role, tunnel peers, routes, pods, last apply);
    /// exits 1 when it is not healthy (not live or not ready), 2 when it cannot be reached.
    Status {
        /// The daemon's metrics address.
        #[arg(long, env = "RAVEN_METRICS_ADDR", default_value = "127.0.0.1:10265")]
        addr: SocketAddr,
        /// Output format.
        #[arg(long, short, value_enum, default_value = "table")]
        output: OutputFormat,
    },
    /// Install the raven-cni binary and chain it after the node's CNI configuration
    /// (writes 05-raven.conflist derived from the first foreign one; idempotent).
    InstallCni(InstallArgs),
    /// Remove 05-raven.conflist: the runtime uses the untouched original chain again.
    UninstallCni {
        #[command(flatten)]
        cni: CniArgs,
        /// Also remove the raven-cni binary (by default it stays, so that DELs of pods added
        /// under our chain keep working).
        #[arg(long)]
        remove_binary: bool,
    },
}

/// Where the runtime's CNI files live and what our plugin entry says.
#[derive(Debug, Clone, Args)]
struct CniArgs {
    /// The runtime's CNI configuration directory.
    #[arg(long, env = "RAVEN_CNI_CONF_DIR", default_value = "/etc/cni/net.d")]
    cni_conf_dir: PathBuf,
    /// The runtime's CNI binary directory.
    #[arg(long, env = "RAVEN_CNI_BIN_DIR", default_value = "/opt/cni/bin")]
    cni_bin_dir: PathBuf,
    /// `nodeStateFile` written into our plugin entry.
    #[arg(long = "cni-node-state-file", env = "RAVEN_NODE_STATE_FILE", default_value = DEFAULT_NODE_STATE_FILE)]
    node_state_file: PathBuf,
    /// `dataDir` written into our plugin entry.
    #[arg(long = "cni-data-dir", env = "RAVEN_CNI_DATA_DIR", default_value = DEFAULT_CNI_DATA_DIR)]
    data_dir: PathBuf,
}

#[derive(Debug, Args)]
struct InstallArgs {
    #[command(flatten)]
    cni: CniArgs,
    /// The raven-cni binary to install (default: `raven-cni` beside this executable).
    #[arg(long, env = "RAVEN_CNI_BINARY")]
    cni_binary: Option<PathBuf>,
    /// Wait up to this many seconds for a CNI configuration to chain after (Flannel may not
    /// have written its file yet when the init container runs); 0: fail at once.
    #[arg(long, default_value_t = 0)]
    wait_seconds: u64,
}

impl CniArgs {
    fn settings(&self, binary: Option<PathBuf>) -> raven_node::cni_install::Settings {
        raven_node::cni_install::Settings {
            conf_dir: self.cni_conf_dir.clone(),
            bin_dir: self.cni_bin_dir.clone(),
            binary,
            node_state_file: self.node_state_file.clone(),
            data_dir: self.data_dir.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OutputFormat {
    /// A table for people.
    Table,
    /// The daemon's JSON report.
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Driver {
    /// WireGuard: the kernel's when it has it, else userspace over TUN.
    Auto,
    /// Same as `auto` (the WireGuard family, implementation chosen automatically).
    Wireguard,
    /// Userspace WireGuard over TUN (any kernel with TUN).
    WireguardUserspace,
    /// Kernel WireGuard (`wireguard` link; needs the wireguard module).
    WireguardKernel,
    /// IPsec (kernel xfrm; not in this build yet).
    Ipsec,
}

impl Driver {
    fn choice(self) -> DriverChoice {
        match self {
            Driver::Auto | Driver::Wireguard => DriverChoice::Auto(TunnelDriver::WireGuard),
            Driver::WireguardUserspace => DriverChoice::Fixed(DriverKind::UserspaceWireGuard),
            Driver::WireguardKernel => DriverChoice::Fixed(DriverKind::KernelWireGuard),
            Driver::Ipsec => DriverChoice::Fixed(DriverKind::Ipsec),
        }
    }
}

#[derive(Debug, Args)]
struct Common {
    /// Name of this node (the DaemonSet sets it from the downward API).
    #[arg(long, env = "NODE_NAME")]
    node_name: Option<String>,
    /// Standalone mode: read Gateway objects (YAML or JSON, status included) from the files of
    /// this directory instead of the Kubernetes API.
    #[arg(long, env = "RAVEN_GATEWAYS_DIR")]
    gateways_dir: Option<PathBuf>,
    /// Kubeconfig for the API server (default: `KUBECONFIG` or the in-cluster service account
    /// when present). With an API server, the node Lease `kube-system/raven-node-<node>` is
    /// renewed while the last apply succeeded, in both modes.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Kubernetes mode: a URL answering this node's public IP (plain text or JSON `ip`),
    /// asked only while this node is an active tunnel endpoint whose Gateway spec has no
    /// `publicIP` and is not exposed through a LoadBalancer (then the Service's ingress IP is
    /// used). Repeatable, tried in order with a 5 s timeout each. None by default: the node
    /// never calls out unless told to.
    #[arg(long = "public-ip-url", value_name = "URL")]
    public_ip_urls: Vec<String>,
    /// State directory (persisted generation, tunnel private key).
    #[arg(long, env = "RAVEN_STATE_DIR", default_value = "/var/lib/raven")]
    state_dir: PathBuf,
    /// Node-state file read by raven-cni (its `nodeStateFile`).
    #[arg(long, env = "RAVEN_NODE_STATE_FILE", default_value = DEFAULT_NODE_STATE_FILE)]
    node_state_file: PathBuf,
    /// raven-cni's data directory (its `dataDir`), holding the pod records to refresh.
    #[arg(long, env = "RAVEN_CNI_DATA_DIR", default_value = DEFAULT_CNI_DATA_DIR)]
    cni_data_dir: PathBuf,
    /// Address of /metrics, /healthz and /readyz; "off" disables the server.
    #[arg(long, env = "RAVEN_METRICS_ADDR", default_value = "127.0.0.1:10265")]
    metrics_addr: String,
    /// MTU of the underlay (default: observed from the default route's link).
    #[arg(long, env = "RAVEN_UNDERLAY_MTU")]
    underlay_mtu: Option<u32>,
    /// MTU of the link towards the other nodes of the domain, when it differs from the
    /// underlay's.
    #[arg(long, env = "RAVEN_DOMAIN_LINK_MTU")]
    domain_link_mtu: Option<u32>,
    /// Tunnel driver of the gateways. The protocol family (WireGuard or IPsec) must be the
    /// same cluster-wide; within WireGuard, kernel and userspace interoperate.
    #[arg(long, env = "RAVEN_TUNNEL_DRIVER", value_enum, default_value = "auto")]
    tunnel_driver: Driver,
    /// Tunnel device name (default: the driver's).
    #[arg(long, env = "RAVEN_TUNNEL_DEVICE")]
    tunnel_device: Option<String>,
    /// Local tunnel UDP port.
    #[arg(long, env = "RAVEN_LISTEN_PORT", default_value_t = plan::options::DEFAULT_LISTEN_PORT)]
    listen_port: u16,
    /// Allow direct tunnels between NATed gateways whose NAT types permit it.
    #[arg(long, env = "RAVEN_NAT_TRAVERSAL")]
    nat_traversal: bool,
    /// Route every node's private IP like a pod subnet.
    #[arg(long, env = "RAVEN_FORWARD_NODE_IP")]
    forward_node_ip: bool,
    /// First two bytes of raven0 MAC addresses, e.g. aa:0f.
    #[arg(long, env = "RAVEN_MAC_PREFIX", default_value = "aa:0f", value_parser = parse_mac_prefix)]
    mac_prefix: [u8; 2],
    /// Local ranges never routed into the tunnel (host networks, service CIDR); repeatable.
    #[arg(
        long = "protected-prefix",
        env = "RAVEN_PROTECTED_PREFIXES",
        value_delimiter = ','
    )]
    protected_prefixes: Vec<IpNetwork>,
    /// How often the Gateway directory is read, in milliseconds.
    #[arg(long, env = "RAVEN_POLL_INTERVAL_MS", default_value_t = 1000)]
    poll_interval_ms: u64,
    /// Full resync interval, in seconds.
    #[arg(long, env = "RAVEN_RESYNC_SECONDS", default_value_t = 30)]
    resync_seconds: u64,
    /// Proxy mode (L7 reverse tunnel, like raven-cfg's `enable-l7-proxy`): run the roles the
    /// Gateways give this node (tunnel server on active proxy endpoints of exposed Gateways,
    /// client on those of the others and on solo nodes; `proxyConfig.replicas` 0 turns it off
    /// per Gateway).
    #[arg(long, env = "RAVEN_PROXY")]
    proxy: bool,
    /// Where the proxy's certificates come from: `files` (`--proxy-cert-dir` etc., watched for
    /// rotation), `csr` (Kubernetes mode: requested from the CSR API for Raven's signers,
    /// signed by raven-controller, renewed before expiry, written to `--proxy-cert-dir`), or
    /// `auto` (`csr` in Kubernetes mode, `files` with --gateways-dir).
    #[arg(long, env = "RAVEN_PROXY_CERTS", value_enum, default_value = "auto")]
    proxy_certs: CertSource,
    /// CSR mode: renew a certificate once this fraction of its lifetime has passed.
    #[arg(long, env = "RAVEN_PROXY_CERT_RENEW_FRACTION", default_value_t = 2.0 / 3.0)]
    proxy_cert_renew_fraction: f64,
    /// Directory with the proxy's `tls.crt`, `tls.key`, `ca.crt` (watched for rotation);
    /// `--proxy-cert/--proxy-key/--proxy-ca` override single files. CSR mode writes
    /// `proxy-{client,server}-current.pem` and `proxy-{client,server}-ca.crt` here.
    #[arg(
        long,
        env = "RAVEN_PROXY_CERT_DIR",
        default_value = "/var/lib/raven/proxy"
    )]
    proxy_cert_dir: PathBuf,
    /// Proxy certificate chain (PEM); a client's CN is `system:node:<nodeName>`.
    #[arg(long, env = "RAVEN_PROXY_CERT")]
    proxy_cert: Option<PathBuf>,
    /// Proxy private key (PEM).
    #[arg(long, env = "RAVEN_PROXY_KEY")]
    proxy_key: Option<PathBuf>,
    /// CA bundle (PEM) that signs every proxy certificate (a Raven-specific signer).
    #[arg(long, env = "RAVEN_PROXY_CA")]
    proxy_ca: Option<PathBuf>,
    /// Tunnel listener of a proxy server.
    #[arg(long, env = "RAVEN_PROXY_LISTEN", default_value = "0.0.0.0:10262")]
    proxy_listen: SocketAddr,
    /// Name the server certificate must carry (default: the IP address dialed, as an IP SAN).
    #[arg(long, env = "RAVEN_PROXY_SERVER_NAME")]
    proxy_server_name: Option<String>,
    /// Where a solo node dials its own ports for the server.
    #[arg(long, env = "RAVEN_PROXY_SOLO_ADDRESS", default_value = "127.0.0.1")]
    proxy_solo_address: std::net::IpAddr,
    /// Dial timeout of every proxy leg (milliseconds).
    #[arg(long, env = "RAVEN_PROXY_DIAL_TIMEOUT_MS", default_value_t = 5000)]
    proxy_dial_timeout_ms: u64,
    /// Tunnel keepalive PING interval (seconds); a PING unanswered for half of it (at least
    /// 1 s) drops the tunnel.
    #[arg(long, env = "RAVEN_PROXY_KEEPALIVE_SECONDS", default_value_t = 10)]
    proxy_keepalive_seconds: u64,
    /// Serve the proxy front side (with --proxy; it listens only while the node is a proxy
    /// server). Implied by --proxy-front-cert and --proxy-front-http; the HTTPS listener
    /// serves the proxy server certificate (CSR mode) or the proxy certificate files (files
    /// mode) unless --proxy-front-cert is given.
    #[arg(long, env = "RAVEN_PROXY_FRONT")]
    proxy_front: bool,
    /// HTTPS listener of the front side for cloud callers. Serving certificate files are
    /// re-read when they change (rotation without a restart).
    #[arg(long, env = "RAVEN_PROXY_FRONT_HTTPS", default_value = "0.0.0.0:10263")]
    proxy_front_https: SocketAddr,
    /// Plain HTTP listener of the front side (bearer tokens only: Kubernetes mode); off by
    /// default.
    #[arg(long, env = "RAVEN_PROXY_FRONT_HTTP")]
    proxy_front_http: Option<SocketAddr>,
    /// Serving certificate chain (PEM) of the front side's HTTPS listener.
    #[arg(long, env = "RAVEN_PROXY_FRONT_CERT")]
    proxy_front_cert: Option<PathBuf>,
    /// Serving key (PEM) of the front side's HTTPS listener.
    #[arg(long, env = "RAVEN_PROXY_FRONT_KEY")]
    proxy_front_key: Option<PathBuf>,
    /// CA (PEM) of callers' client certificates (e.g. kube-apiserver's kubelet-client CA).
    #[arg(long, env = "RAVEN_PROXY_FRONT_CLIENT_CA")]
    proxy_front_client_ca: Option<PathBuf>,
    /// Roots (PEM) verifying the kubelets' serving certificates (the front never skips it).
    #[arg(long, env = "RAVEN_PROXY_KUBELET_CA")]
    proxy_kubelet_ca: Option<PathBuf>,
    /// Client certificate (PEM) the front side presents to kubelets.
    #[arg(long, env = "RAVEN_PROXY_KUBELET_CLIENT_CERT")]
    proxy_kubelet_client_cert: Option<PathBuf>,
    /// Its key (PEM).
    #[arg(long, env = "RAVEN_PROXY_KUBELET_CLIENT_KEY")]
    proxy_kubelet_client_key: Option<PathBuf>,
    /// Log filter (tracing env-filter syntax).
    #[arg(long, env = "RAVEN_LOG", default_value = "info")]
    log: String,
    /// Keep raven-cni chained in the CNI configuration: re-run the configuration install
    /// whenever the CNI configuration directory changes (the DaemonSet sets it).
    #[arg(long, env = "RAVEN_MANAGE_CNI")]
    manage_cni: bool,
    /// The runtime's CNI configuration directory (with --manage-cni).
    #[arg(long, env = "RAVEN_CNI_CONF_DIR", default_value = "/etc/cni/net.d")]
    cni_conf_dir: PathBuf,
}

/// `--proxy-certs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum CertSource {
    /// CSR in Kubernetes mode, files in standalone mode.
    Auto,
    /// PEM files.
    Files,
    /// The CSR API (Kubernetes mode only).
    Csr,
}

/// CSR mode's settings when it applies (`--proxy` and the certificate source resolves to
/// CSR); an error for CSR asked in standalone mode or a bad renewal fraction.
fn csr_settings(c: &Common) -> Result<Option<CsrSettings>, String> {
    let kubernetes = c.gateways_dir.is_none();
    let csr = match c.proxy_certs {
        CertSource::Files => false,
        CertSource::Auto => kubernetes,
        CertSource::Csr if !kubernetes => {
            return Err("--proxy-certs csr needs Kubernetes mode (not --gateways-dir)".to_owned());
        }
        CertSource::Csr => true,
    };
    if !c.proxy || !csr {
        return Ok(None);
    }
    let f = c.proxy_cert_renew_fraction;
    if !(f > 0.0 && f < 1.0) {
        return Err(format!(
            "--proxy-cert-renew-fraction {f}: must be between 0 and 1 (exclusive)"
        ));
    }
    if c.proxy_cert.is_some() || c.proxy_key.is_some() || c.proxy_ca.is_some() {
        return Err(
            "--proxy-cert/--proxy-key/--proxy-ca are files-mode flags; pass --proxy-certs files \
             (CSR mode writes its own files into --proxy-cert-dir)"
                .to_owned(),
        );
    }
    let mut s = CsrSettings::new(c.proxy_cert_dir.clone());
    s.renew_fraction = f;
    Ok(Some(s))
}

fn parse_mac_prefix(s: &str) -> Result<[u8; 2], String> {
    let parts: Vec<&str> = s.split(':').collect();
    let [a, b] = parts.as_slice() else {
        return Err(format!("{s:?}: expected two hex bytes like aa:0f"));
    };
    let byte = |p: &str| {
        u8::from_str_radix(p, 16).map_err(|e| format!("{s:?}: {p:?} is not a hex byte: {e}"))
    };
    Ok([byte(a)?, byte(b)?])
}

fn config(c: &Common) -> Result<Config, String> {
    let metrics_addr = match c.metrics_addr.as_str() {
        "off" | "" => None,
        text => Some(
            text.parse::<SocketAddr>()
                .map_err(|e| format!("--metrics-addr {text:?}: {e}"))?,
        ),
    };
    if c.poll_interval_ms == 0 || c.resync_seconds == 0 {
        return Err("--poll-interval-ms and --resync-seconds must be positive".to_owned());
    }
    let options = Options {
        driver: c.tunnel_driver.choice().family(),
        underlay_mtu: c.underlay_mtu.unwrap_or(0),
        domain_link_mtu: c.domain_link_mtu,
        nat_traversal: c.nat_traversal,
        forward_node_ip: c.forward_node_ip,
        listen_port: c.listen_port,
        mac_prefix: c.mac_prefix,
        tunnel_device: c.tunnel_device.clone(),
        protected_prefixes: c.protected_prefixes.clone(),
    };
    let resync = Duration::from_secs(c.resync_seconds);
    let proxy_csr = csr_settings(c)?;
    let mut proxy = c.proxy.then(|| proxy_config(c)).transpose()?;
    if let (Some(pc), Some(csr)) = (&mut proxy, &proxy_csr) {
        pc.certs = csr.client_paths(&pc.node_name);
        pc.server_certs = Some(csr.server_paths(&pc.node_name));
    }
    let proxy_front = front_settings(c, proxy_csr.as_ref())?;
    Ok(Config {
        node_name: c.node_name.clone().unwrap_or_default(),
        source: match &c.gateways_dir {
            Some(dir) => SourceConfig::Dir(dir.clone()),
            None => SourceConfig::Kubernetes,
        },
        state_dir: c.state_dir.clone(),
        node_state_file: c.node_state_file.clone(),
        cni_data_dir: c.cni_data_dir.clone(),
        metrics_addr,
        options,
        tunnel_driver: c.tunnel_driver.choice(),
        poll_interval: Duration::from_millis(c.poll_interval_ms),
        timing: Timing {
            resync,
            republish: resync.max(Duration::from_secs(60)),
            ..Timing::default()
        },
        kube: raven_node::daemon::lease::access(
            c.kubeconfig.clone(),
            std::env::var("KUBECONFIG").ok().as_deref(),
            std::env::var("KUBERNETES_SERVICE_HOST").ok().as_deref(),
        ),
        public_ip_urls: c.public_ip_urls.clone(),
        cni: c.manage_cni.then(|| raven_node::cni_install::Settings {
            conf_dir: c.cni_conf_dir.clone(),
            bin_dir: PathBuf::new(),
            binary: None,
            node_state_file: c.node_state_file.clone(),
            data_dir: c.cni_data_dir.clone(),
        }),
        proxy,
        proxy_front,
        proxy_csr,
    })
}

/// The front side's settings: on with --proxy-front, or when a serving certificate or the
/// plain HTTP listener is asked for (proxy servers); needs --proxy. In CSR mode the HTTPS
/// listener serves the proxy server certificate unless one is given.
fn front_settings(c: &Common, csr: Option<&CsrSettings>) -> Result<Option<FrontSettings>, String> {
    if !c.proxy_front
        && c.proxy_front_cert.is_none()
        && c.proxy_front_key.is_none()
        && c.proxy_front_http.is_none()
    {
        return Ok(None);
    }
    if !c.proxy {
        return Err("--proxy-front-* flags need --proxy".to_owned());
    }
    let (cert, key) = match (&c.proxy_front_cert, &c.proxy_front_key, csr) {
        (None, None, Some(csr)) if c.proxy_front => {
            let p = csr.server_paths(c.node_name.as_deref().unwrap_or_default());
            (Some(p.cert), Some(p.key))
        }
        // Files mode: the node's proxy certificate serves the front too.
        (None, None, None) if c.proxy_front => {
            let p = proxy_cert_paths(c);
            (Some(p.cert), Some(p.key))
        }
        (cert, key, _) => (cert.clone(), key.clone()),
    };
    Ok(Some(FrontSettings {
        https: cert.is_some().then_some(c.proxy_front_https),
        http: c.proxy_front_http,
        cert,
        key,
        client_ca: c.proxy_front_client_ca.clone(),
        kubelet_ca: c.proxy_kubelet_ca.clone(),
        kubelet_client_cert: c.proxy_kubelet_client_cert.clone(),
        kubelet_client_key: c.proxy_kubelet_client_key.clone(),
    }))
}

/// Files mode's proxy certificate: `--proxy-cert-dir`, single files overridden.
fn proxy_cert_paths(c: &Common) -> CertPaths {
    let mut certs = CertPaths::in_dir(&c.proxy_cert_dir);
    if let Some(p) = &c.proxy_cert {
        certs.cert = p.clone();
    }
    if let Some(p) = &c.proxy_key {
        certs.key = p.clone();
    }
    if let Some(p) = &c.proxy_ca {
        certs.ca = p.clone();
    }
    certs
}

fn proxy_config(c: &Common) -> Result<ProxyConfig, String> {
    if c.proxy_dial_timeout_ms == 0 || c.proxy_keepalive_seconds == 0 {
        return Err(
            "--proxy-dial-timeout-ms and --proxy-keepalive-seconds must be positive".to_owned(),
        );
    }
    let mut pc = ProxyConfig::new(
        c.node_name.as_deref().unwrap_or_default(),
        proxy_cert_paths(c),
    );
    pc.listen = c.proxy_listen;
    pc.server_name = c.proxy_server_name.clone();
    pc.solo_ip = c.proxy_solo_address;
    pc.timing.dial_timeout = Duration::from_millis(c.proxy_dial_timeout_ms);
    pc.timing.keepalive_interval = Duration::from_secs(c.proxy_keepalive_seconds);
    pc.timing.keepalive_timeout = (pc.timing.keepalive_interval / 2).max(Duration::from_secs(1));
    Ok(pc)
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// `install-cni`: binary, then configuration; waits for a source when asked to.
fn install_cni(args: &InstallArgs) -> ExitCode {
    use raven_node::cni_install::{self, Desired};
    let binary = args.cni_binary.clone().or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|d| d.join("raven-cni")))
    });
    let settings = args.cni.settings(binary);
    let deadline = std::time::Instant::now() + Duration::from_secs(args.wait_seconds);
    loop {
        match cni_install::install(&settings) {
            Ok(outcome) => match outcome.conf {
                Desired::Write { source, .. } | Desired::UpToDate { source } => {
                    println!(
                        "raven-cni chained after {source} in {} (binary {})",
                        settings.conf_dir.join(cni_install::OUR_FILE).display(),
                        if outcome.binary_written {
                            "installed"
                        } else {
                            "up to date"
                        }
                    );
                    return ExitCode::SUCCESS;
                }
                Desired::Absent if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_secs(1));
                }
                Desired::Absent => {
                    eprintln!(
                        "raven-node: no CNI configuration in {} to chain raven-cni after \
                         (is Flannel installed?)",
                        settings.conf_dir.display()
                    );
                    return ExitCode::FAILURE;
                }
            },
            Err(e) => {
                eprintln!("raven-node: install-cni: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
}

/// `status`: fetch, print, exit by health.
fn status(addr: SocketAddr, output: OutputFormat) -> ExitCode {
    use raven_node::daemon::status;
    // The DaemonSet's RAVEN_METRICS_ADDR is a listen address (0.0.0.0): ask loopback then.
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let report = match status::fetch(addr, Duration::from_secs(5)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("raven-node: {e}");
            return ExitCode::from(2);
        }
    };
    match output {
        OutputFormat::Table => print!("{}", status::render_table(&report)),
        OutputFormat::Json => match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("raven-node: encoding the report: {e}");
                return ExitCode::from(2);
            }
        },
    }
    if report.healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn main() -> ExitCode {
    raven_node::memory::tune_allocator();
    let cli = Cli::parse();
    let common = match &cli.command {
        Command::Run(c) | Command::Cleanup(c) => c,
        Command::InstallCni(args) => return install_cni(args),
        Command::Status { addr, output } => return status(*addr, *output),
        Command::UninstallCni { cni, remove_binary } => {
            return match raven_node::cni_install::uninstall(&cni.settings(None), *remove_binary) {
                Ok(changed) => {
                    println!(
                        "{}",
                        if changed {
                            "raven-cni removed from the CNI configuration"
                        } else {
                            "raven-cni was not installed"
                        }
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("raven-node: uninstall-cni: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Command::PublicKey { state_dir } => {
            return match raven_node::daemon::drivers::public_key(state_dir) {
                Ok(key) => {
                    println!("{key}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("raven-node: {e}");
                    ExitCode::FAILURE
                }
            };
        }
    };
    init_logging(&common.log);
    let config = match config(common) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("raven-node: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Run(_) => raven_node::daemon::run(config),
        Command::Cleanup(_) => raven_node::daemon::cleanup(&config),
        Command::PublicKey { .. }
        | Command::InstallCni(_)
        | Command::UninstallCni { .. }
        | Command::Status { .. } => Ok(()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_prefix_parsing() {
        assert_eq!(parse_mac_prefix("aa:0f"), Ok([0xaa, 0x0f]));
        assert!(parse_mac_prefix("aa").is_err());
        assert!(parse_mac_prefix("zz:00").is_err());
    }

    #[test]
    fn flags_become_config() {
        let cli = Cli::try_parse_from([
            "raven-node",
            "run",
            "--node-name",
            "n1",
            "--gateways-dir",
            "/gw",
            "--underlay-mtu",
            "1500",
            "--protected-prefix",
            "10.96.0.0/12,192.168.0.0/16",
            "--metrics-addr",
            "off",
        ])
        .unwrap();
        let Command::Run(c) = &cli.command else {
            panic!("run expected")
        };
        let cfg = config(c).unwrap();
        assert_eq!(cfg.node_name, "n1");
        assert_eq!(cfg.source, SourceConfig::Dir("/gw".into()));
        assert_eq!(cfg.metrics_addr, None);
        assert_eq!(cfg.options.protected_prefixes.len(), 2);
        assert_eq!(cfg.options.driver, TunnelDriver::WireGuard);
        assert_eq!(
            cfg.tunnel_driver,
            DriverChoice::Auto(TunnelDriver::WireGuard),
            "auto is the default"
        );
        for (flag, want) in [
            (
                "wireguard-kernel",
                DriverChoice::Fixed(DriverKind::KernelWireGuard),
            ),
            (
                "wireguard-userspace",
                DriverChoice::Fixed(DriverKind::UserspaceWireGuard),
            ),
            ("ipsec", DriverChoice::Fixed(DriverKind::Ipsec)),
        ] {
            let cli =
                Cli::try_parse_from(["raven-node", "cleanup", "--tunnel-driver", flag]).unwrap();
            let Command::Cleanup(c) = &cli.command else {
                panic!("cleanup expected")
            };
            let cfg = config(c).unwrap();
            assert_eq!(cfg.tunnel_driver, want);
            assert_eq!(cfg.options.driver, want.family());
        }
        assert!(
            Cli::try_parse_from(["raven-node", "run", "--tunnel-driver", "libreswan"]).is_err()
        );
        let cli = Cli::try_parse_from(["raven-node", "run", "--metrics-addr", "nope"]).unwrap();
        let Command::Run(c) = &cli.command else {
            panic!("run expected")
        };
        assert!(config(c).unwrap_err().contains("--metrics-addr"));
    }

    #[test]
    fn proxy_flags() {
        let parse = |extra: &[&str]| {
            let mut argv = vec![
                "raven-node",
                "run",
                "--node-name",
                "n1",
                "--gateways-dir",
                "/gw",
            ];
            argv.extend_from_slice(extra);
            let cli = Cli::try_parse_from(argv).unwrap();
            let Command::Run(c) = cli.command else {
                panic!("run expected")
            };
            config(&c)
        };
        assert!(parse(&[]).unwrap().proxy.is_none(), "off by default");
        let pc = parse(&["--proxy", "--proxy-cert-dir", "/d", "--proxy-ca", "/ca.pem"])
            .unwrap()
            .proxy
            .unwrap();
        assert_eq!(pc.node_name, "n1");
        assert_eq!(pc.certs.cert, PathBuf::from("/d/tls.crt"));
        assert_eq!(pc.certs.key, PathBuf::from("/d/tls.key"));
        assert_eq!(pc.certs.ca, PathBuf::from("/ca.pem"));
        assert_eq!(pc.listen.port(), 10262);
        let e = parse(&["--proxy", "--proxy-dial-timeout-ms", "0"]).unwrap_err();
        assert!(e.contains("--proxy-dial-timeout-ms"), "{e}");
        // Front side: off unless a serving certificate or plain HTTP is asked for.
        assert!(parse(&["--proxy"]).unwrap().proxy_front.is_none());
        let f = parse(&[
            "--proxy",
            "--proxy-front-cert",
            "/f.crt",
            "--proxy-front-key",
            "/f.key",
            "--proxy-front-client-ca",
            "/ca.crt",
            "--proxy-kubelet-ca",
            "/k.crt",
        ])
        .unwrap()
        .proxy_front
        .unwrap();
        assert_eq!(f.https, Some("0.0.0.0:10263".parse().unwrap()));
        assert_eq!(f.http, None, "plain HTTP off by default");
        assert_eq!(f.client_ca, Some(PathBuf::from("/ca.crt")));
        assert_eq!(f.kubelet_ca, Some(PathBuf::from("/k.crt")));
        let e = parse(&["--proxy-front-cert", "/f.crt"]).unwrap_err();
        assert!(e.contains("need --proxy"), "{e}");
        // Standalone mode: files, whatever auto means; csr is refused there.
        assert!(parse(&["--proxy"]).unwrap().proxy_csr.is_none());
        let e = parse(&["--proxy", "--proxy-certs", "csr"]).unwrap_err();
        assert!(e.contains("Kubernetes mode"), "{e}");
    }

    #[test]
    fn kubernetes_mode_proxy_certificates_come_from_csrs() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["raven-node", "run", "--node-name", "n1"];
            argv.extend_from_slice(extra);
            let cli = Cli::try_parse_from(argv).unwrap();
            let Command::Run(c) = cli.command else {
                panic!("run expected")
            };
            config(&c)
        };
        let cfg = parse(&["--proxy", "--proxy-cert-dir", "/p", "--proxy-front"]).unwrap();
        let csr = cfg.proxy_csr.expect("auto is csr in Kubernetes mode");
        assert_eq!(csr.dir, PathBuf::from("/p"));
        let pc = cfg.proxy.unwrap();
        assert_eq!(pc.certs.cert, PathBuf::from("/p/proxy-client-current.pem"));
        assert_eq!(pc.certs.ca, PathBuf::from("/p/proxy-client-ca.crt"));
        let server = pc.server_certs.expect("separate server material");
        assert_eq!(server.key, PathBuf::from("/p/proxy-server-current.pem"));
        let f = cfg.proxy_front.expect("front on");
        assert_eq!(f.cert, Some(PathBuf::from("/p/proxy-server-current.pem")));
        assert_eq!(f.https, Some("0.0.0.0:10263".parse().unwrap()));
        // Explicit files mode keeps tls.crt & co; no proxy, no CSR.
        let cfg = parse(&["--proxy", "--proxy-certs", "files"]).unwrap();
        assert!(cfg.proxy_csr.is_none());
        assert!(cfg.proxy.unwrap().server_certs.is_none());
        assert!(parse(&[]).unwrap().proxy_csr.is_none());
        for bad in ["0", "1", "1.5", "NaN"] {
            let e = parse(&["--proxy", "--proxy-cert-renew-fraction", bad]).unwrap_err();
            assert!(e.contains("--proxy-cert-renew-fraction"), "{e}");
        }
        let e = parse(&["--proxy", "--proxy-cert", "/c.pem"]).unwrap_err();
        assert!(e.contains("--proxy-certs files"), "{e}");
        // Files mode: the node's proxy certificate serves the front too.
        let f = parse(&["--proxy", "--proxy-certs", "files", "--proxy-front"])
            .unwrap()
            .proxy_front
            .unwrap();
        assert_eq!(f.cert, Some(PathBuf::from("/var/lib/raven/proxy/tls.crt")));
        assert_eq!(f.key, Some(PathBuf::from("/var/lib/raven/proxy/tls.key")));
    }
}
