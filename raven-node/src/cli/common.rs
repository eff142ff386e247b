//! The flags of `run` and `cleanup` (`Common`) and their conversion into the daemon's
//! [`Config`] (the proxy flags' part is in [`super::proxy`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use ipnetwork::IpNetwork;
use raven_api::nodestate::{DEFAULT_CNI_DATA_DIR, DEFAULT_NODE_STATE_FILE};
use raven_node::daemon::engine::Timing;
use raven_node::daemon::{Config, SourceConfig};
use raven_node::plan::{self, Options, TunnelDriver};
use raven_node::tunnel::{DriverChoice, DriverKind};

use super::proxy::{self, CertSource};

#[derive(Debug, Args)]
pub(crate) struct Common {
    /// Name of this node (the DaemonSet sets it from the downward API).
    #[arg(long, env = "NODE_NAME")]
    pub(super) node_name: Option<String>,
    /// Standalone mode: read Gateway objects (YAML or JSON, status included) from the files of
    /// this directory instead of the Kubernetes API.
    #[arg(long, env = "RAVEN_GATEWAYS_DIR")]
    pub(super) gateways_dir: Option<PathBuf>,
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
    pub(super) proxy: bool,
    /// Where the proxy's certificates come from: `files` (`--proxy-cert-dir` etc., watched for
    /// rotation), `csr` (Kubernetes mode: requested from the CSR API for Raven's signers,
    /// signed by raven-controller, renewed before expiry, written to `--proxy-cert-dir`), or
    /// `auto` (`csr` in Kubernetes mode, `files` with --gateways-dir).
    #[arg(long, env = "RAVEN_PROXY_CERTS", value_enum, default_value = "auto")]
    pub(super) proxy_certs: CertSource,
    /// CSR mode: renew a certificate once this fraction of its lifetime has passed.
    #[arg(long, env = "RAVEN_PROXY_CERT_RENEW_FRACTION", default_value_t = 2.0 / 3.0)]
    pub(super) proxy_cert_renew_fraction: f64,
    /// Directory with the proxy's `tls.crt`, `tls.key`, `ca.crt` (watched for rotation);
    /// `--proxy-cert/--proxy-key/--proxy-ca` override single files. CSR mode writes
    /// `proxy-{client,server}-current.pem` and `proxy-{client,server}-ca.crt` here.
    #[arg(
        long,
        env = "RAVEN_PROXY_CERT_DIR",
        default_value = "/var/lib/raven/proxy"
    )]
    pub(super) proxy_cert_dir: PathBuf,
    /// Proxy certificate chain (PEM); a client's CN is `system:node:<nodeName>`.
    #[arg(long, env = "RAVEN_PROXY_CERT")]
    pub(super) proxy_cert: Option<PathBuf>,
    /// Proxy private key (PEM).
    #[arg(long, env = "RAVEN_PROXY_KEY")]
    pub(super) proxy_key: Option<PathBuf>,
    /// CA bundle (PEM) that signs every proxy certificate (a Raven-specific signer).
    #[arg(long, env = "RAVEN_PROXY_CA")]
    pub(super) proxy_ca: Option<PathBuf>,
    /// Tunnel listener of a proxy server.
    #[arg(long, env = "RAVEN_PROXY_LISTEN", default_value = "0.0.0.0:10262")]
    pub(super) proxy_listen: SocketAddr,
    /// Name the server certificate must carry (default: the IP address dialed, as an IP SAN).
    #[arg(long, env = "RAVEN_PROXY_SERVER_NAME")]
    pub(super) proxy_server_name: Option<String>,
    /// Where a solo node dials its own ports for the server.
    #[arg(long, env = "RAVEN_PROXY_SOLO_ADDRESS", default_value = "127.0.0.1")]
    pub(super) proxy_solo_address: std::net::IpAddr,
    /// Dial timeout of every proxy leg (milliseconds).
    #[arg(long, env = "RAVEN_PROXY_DIAL_TIMEOUT_MS", default_value_t = 5000)]
    pub(super) proxy_dial_timeout_ms: u64,
    /// Tunnel keepalive PING interval (seconds); a PING unanswered for half of it (at least
    /// 1 s) drops the tunnel.
    #[arg(long, env = "RAVEN_PROXY_KEEPALIVE_SECONDS", default_value_t = 10)]
    pub(super) proxy_keepalive_seconds: u64,
    /// Serve the proxy front side (with --proxy; it listens only while the node is a proxy
    /// server). Implied by --proxy-front-cert and --proxy-front-http; the HTTPS listener
    /// serves the proxy server certificate (CSR mode) or the proxy certificate files (files
    /// mode) unless --proxy-front-cert is given.
    #[arg(long, env = "RAVEN_PROXY_FRONT")]
    pub(super) proxy_front: bool,
    /// HTTPS listener of the front side for cloud callers. Serving certificate files are
    /// re-read when they change (rotation without a restart).
    #[arg(long, env = "RAVEN_PROXY_FRONT_HTTPS", default_value = "0.0.0.0:10263")]
    pub(super) proxy_front_https: SocketAddr,
    /// Plain HTTP listener of the front side (bearer tokens only: Kubernetes mode); off by
    /// default.
    #[arg(long, env = "RAVEN_PROXY_FRONT_HTTP")]
    pub(super) proxy_front_http: Option<SocketAddr>,
    /// Serving certificate chain (PEM) of the front side's HTTPS listener.
    #[arg(long, env = "RAVEN_PROXY_FRONT_CERT")]
    pub(super) proxy_front_cert: Option<PathBuf>,
    /// Serving key (PEM) of the front side's HTTPS listener.
    #[arg(long, env = "RAVEN_PROXY_FRONT_KEY")]
    pub(super) proxy_front_key: Option<PathBuf>,
    /// CA (PEM) of callers' client certificates (e.g. kube-apiserver's kubelet-client CA).
    #[arg(long, env = "RAVEN_PROXY_FRONT_CLIENT_CA")]
    pub(super) proxy_front_client_ca: Option<PathBuf>,
    /// Roots (PEM) verifying the kubelets' serving certificates (the front never skips it).
    #[arg(long, env = "RAVEN_PROXY_KUBELET_CA")]
    pub(super) proxy_kubelet_ca: Option<PathBuf>,
    /// Client certificate (PEM) the front side presents to kubelets.
    #[arg(long, env = "RAVEN_PROXY_KUBELET_CLIENT_CERT")]
    pub(super) proxy_kubelet_client_cert: Option<PathBuf>,
    /// Its key (PEM).
    #[arg(long, env = "RAVEN_PROXY_KUBELET_CLIENT_KEY")]
    pub(super) proxy_kubelet_client_key: Option<PathBuf>,
    /// Log filter (tracing env-filter syntax).
    #[arg(long, env = "RAVEN_LOG", default_value = "info")]
    pub(crate) log: String,
    /// Keep raven-cni chained in the CNI configuration: re-run the configuration install
    /// whenever the CNI configuration directory changes (the DaemonSet sets it).
    #[arg(long, env = "RAVEN_MANAGE_CNI")]
    manage_cni: bool,
    /// The runtime's CNI configuration directory (with --manage-cni).
    #[arg(long, env = "RAVEN_CNI_CONF_DIR", default_value = "/etc/cni/net.d")]
    cni_conf_dir: PathBuf,
}

/// The daemon configuration of `run`/`cleanup`; an error names the flag it rejects.
pub(crate) fn config(c: &Common) -> Result<Config, String> {
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
    let proxy = proxy::settings(c)?;
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
        proxy: proxy.tunnel,
        proxy_front: proxy.front,
        proxy_csr: proxy.csr,
    })
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

/// `--mac-prefix`: two hex bytes separated by a colon.
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, config_of};

    #[test]
    fn mac_prefix_parsing() {
        assert_eq!(parse_mac_prefix("aa:0f"), Ok([0xaa, 0x0f]));
        assert!(parse_mac_prefix("aa").is_err());
        assert!(parse_mac_prefix("zz:00").is_err());
    }

    #[test]
    fn flags_become_config() {
        let cfg = config_of(&[
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
            let cfg = config_of(&["cleanup", "--tunnel-driver", flag]).unwrap();
            assert_eq!(cfg.tunnel_driver, want);
            assert_eq!(cfg.options.driver, want.family());
        }
        assert!(
            Cli::try_parse_from(["raven-node", "run", "--tunnel-driver", "libreswan"]).is_err()
        );
        let e = config_of(&["run", "--metrics-addr", "nope"]).unwrap_err();
        assert!(e.contains("--metrics-addr"), "{e}");
    }
}
