//! `raven-controller`: the control plane (Deployment).
//!
//! `raven-controller run` divides nodes into network domains, writes one Gateway per domain,
//! elects active endpoints, keeps Gateway status, Services and the DNS ConfigMap right, and
//! takes part in leader election so two replicas can run. Every choice is a flag (with an
//! environment variable); `--help` lists them.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use raven_api::gateway::ExposeType;
use raven_api::wellknown::WORKING_NAMESPACE;
use raven_controller::csr::{self, CsrSettings};
use raven_controller::domains::{DEFAULT_CANDIDATE_LABEL, DEFAULT_CLOUD_GATEWAY, DomainConfig};
use raven_controller::election::LeasePolicy;
use raven_controller::runtime::{self, Settings, leader::LeaderConfig};
use raven_controller::webhook::{self, WebhookSettings};

/// Raven controller: network domains, Gateways and gateway election.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the controller.
    Run(RunArgs),
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum CloudExpose {
    /// A LoadBalancer Service per active endpoint.
    LoadBalancer,
    /// The endpoints' own public IPs.
    PublicIp,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LeasePolicyArg {
    /// A node without a raven-node Lease counts as healthy when Ready (mixed clusters).
    MissingIsHealthy,
    /// Every candidate must renew a raven-node Lease.
    Required,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Kubeconfig to use instead of the in-cluster configuration.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Node label holding the node's pool.
    #[arg(long, env = "RAVEN_POOL_LABEL", default_value = raven_api::wellknown::LABEL_NODEPOOL)]
    pool_label: String,
    /// Opt-in node label (value "true") marking gateway candidates; without any, all members
    /// of a domain are candidates.
    #[arg(long, env = "RAVEN_CANDIDATE_LABEL", default_value = DEFAULT_CANDIDATE_LABEL)]
    candidate_label: String,
    /// Name of the cloud domain's Gateway.
    #[arg(long, env = "RAVEN_CLOUD_GATEWAY", default_value = DEFAULT_CLOUD_GATEWAY)]
    cloud_gateway: String,
    /// Pools that form the cloud domain whatever their NodePool says (comma-separated).
    #[arg(long, env = "RAVEN_CLOUD_POOLS", value_delimiter = ',')]
    cloud_pools: Vec<String>,
    /// How the cloud Gateway is exposed.
    #[arg(
        long,
        env = "RAVEN_CLOUD_EXPOSE_TYPE",
        value_enum,
        default_value = "load-balancer"
    )]
    cloud_expose_type: CloudExpose,
    /// Do not give nodes outside any connected pool a Gateway of their own.
    #[arg(long, env = "RAVEN_NO_SOLO_GATEWAYS")]
    no_solo_gateways: bool,
    /// Do not mark edge endpoints underNAT.
    #[arg(long, env = "RAVEN_EDGE_NOT_UNDER_NAT")]
    edge_not_under_nat: bool,
    /// proxyConfig.Replicas of new Gateways.
    #[arg(long, env = "RAVEN_PROXY_REPLICAS", default_value_t = 1)]
    proxy_replicas: i64,
    /// tunnelConfig.Replicas of new Gateways (at most 1).
    #[arg(long, env = "RAVEN_TUNNEL_REPLICAS", default_value_t = 1)]
    tunnel_replicas: i64,
    /// Treatment of candidates without a raven-node health Lease.
    #[arg(
        long,
        env = "RAVEN_LEASE_POLICY",
        value_enum,
        default_value = "missing-is-healthy"
    )]
    lease_policy: LeasePolicyArg,
    /// Seconds between full re-evaluations (at most 60).
    #[arg(long, env = "RAVEN_RESYNC_SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=60))]
    resync_seconds: u64,
    /// Milliseconds to collect watch events before a pass.
    #[arg(long, env = "RAVEN_DEBOUNCE_MS", default_value_t = 100)]
    debounce_ms: u64,
    /// Concurrent API writes per group (each on its own HTTP/1.1 keep-alive connection).
    ///
    /// On the 10k-node benchmark the API server is CPU-bound at any value from 8 to 128:
    /// Gateways are written at the same rate (within the run-to-run spread); lower values make
    /// it drop fewer slow watchers (0–3 against 37–65 per cold start) but write the 10 000 node
    /// labels slower (41–48 s at 16 against 20–38 s at 64), so 64 stays (BENCHMARKS.md,
    /// issue 5, session 5).
    #[arg(long, env = "RAVEN_CONCURRENCY", default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: u16,
    /// Name of the leader-election Lease (in kube-system).
    #[arg(long, env = "RAVEN_LEADER_LEASE", default_value = "raven-controller")]
    leader_lease: String,
    /// This replica's identity in the leader Lease (default: hostname and pid).
    #[arg(long, env = "RAVEN_IDENTITY")]
    identity: Option<String>,
    /// Leader Lease duration in seconds.
    #[arg(long, env = "RAVEN_LEADER_LEASE_SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(2..))]
    leader_lease_seconds: u64,
    /// Do not look for OpenYurt's NodePool CRD.
    #[arg(long, env = "RAVEN_NO_NODEPOOLS")]
    no_nodepools: bool,
    /// Where `/metrics` and `/healthz` listen (the Deployment's port `metrics`); `off`
    /// disables the server.
    #[arg(long, env = "RAVEN_METRICS_ADDR", default_value = "0.0.0.0:10266")]
    metrics_addr: String,
    /// Do not serve the Gateway admission and conversion webhooks.
    #[arg(long, env = "RAVEN_NO_WEBHOOKS")]
    no_webhooks: bool,
    /// Listen address of the webhook server (the webhook Service's targetPort).
    #[arg(
        long,
        env = "RAVEN_WEBHOOK_BIND_ADDRESS",
        default_value = "0.0.0.0:9443"
    )]
    webhook_bind_address: std::net::SocketAddr,
    /// Secret (in kube-system) holding the webhook CA and serving certificate.
    #[arg(long, env = "RAVEN_WEBHOOK_SECRET", default_value = webhook::DEFAULT_SECRET)]
    webhook_secret: String,
    /// Service (in kube-system) through which the API server reaches the webhooks.
    #[arg(long, env = "RAVEN_WEBHOOK_SERVICE", default_value = raven_api::wellknown::CONVERSION_WEBHOOK_SERVICE)]
    webhook_service: String,
    /// Name of the Validating- and MutatingWebhookConfiguration that get the CA bundle.
    #[arg(long, env = "RAVEN_WEBHOOK_CONFIGURATION", default_value = webhook::DEFAULT_CONFIGURATION)]
    webhook_configuration: String,
    /// Seconds between re-reads of the webhook Secret and CA bundle checks.
    #[arg(long, env = "RAVEN_WEBHOOK_RECHECK_SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    webhook_recheck_seconds: u64,
    /// Do not approve and sign CSRs of the Raven proxy signers.
    #[arg(long, env = "RAVEN_NO_CSR_SIGNER")]
    no_csr_signer: bool,
    /// Secret (in kube-system) holding the proxy CA.
    #[arg(long, env = "RAVEN_PROXY_CA_SECRET", default_value = csr::DEFAULT_CA_SECRET)]
    proxy_ca_secret: String,
    /// User name of raven-node's ServiceAccount (its pod-bound tokens may request proxy
    /// certificates for the node their pod runs on, and change only that node's own tunnel
    /// endpoints in Gateways).
    #[arg(long, env = "RAVEN_NODE_USER", default_value = csr::DEFAULT_RAVEN_NODE_USER)]
    raven_node_user: String,
    /// Lifetime of issued proxy certificates, in hours.
    #[arg(long, env = "RAVEN_PROXY_CERT_HOURS", default_value_t = 720, value_parser = clap::value_parser!(u64).range(1..))]
    proxy_cert_hours: u64,
}

fn identity(given: Option<String>) -> String {
    given.unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "unknown".to_owned());
        format!("{host}-{}", std::process::id())
    })
}

fn webhook_settings(a: &RunArgs) -> Option<WebhookSettings> {
    (!a.no_webhooks).then(|| WebhookSettings {
        bind: a.webhook_bind_address,
        namespace: WORKING_NAMESPACE.to_owned(),
        secret: a.webhook_secret.clone(),
        service: a.webhook_service.clone(),
        configuration: a.webhook_configuration.clone(),
        crd: raven_api::wellknown::GATEWAY_CRD_NAME.to_owned(),
        policy: webhook::certs::Policy::default(),
        recheck: Duration::from_secs(a.webhook_recheck_seconds),
        raven_node_user: a.raven_node_user.clone(),
    })
}

fn csr_settings(a: &RunArgs) -> Option<CsrSettings> {
    (!a.no_csr_signer).then(|| CsrSettings {
        namespace: WORKING_NAMESPACE.to_owned(),
        ca_secret: a.proxy_ca_secret.clone(),
        raven_node_user: a.raven_node_user.clone(),
        validity: Duration::from_secs(a.proxy_cert_hours.saturating_mul(3600)),
        ca_validity: Duration::from_secs(3650 * 86_400),
    })
}

fn settings(a: RunArgs) -> Settings {
    let lease = Duration::from_secs(a.leader_lease_seconds);
    Settings {
        domains: DomainConfig {
            pool_label: a.pool_label,
            candidate_label: a.candidate_label,
            cloud_gateway: a.cloud_gateway,
            cloud_pools: a
                .cloud_pools
                .into_iter()
                .filter(|p| !p.is_empty())
                .collect::<BTreeSet<_>>(),
            cloud_expose_type: match a.cloud_expose_type {
                CloudExpose::LoadBalancer => ExposeType::LoadBalancer,
                CloudExpose::PublicIp => ExposeType::PublicIP,
            },
            solo_gateways: !a.no_solo_gateways,
            edge_under_nat: !a.edge_not_under_nat,
            proxy_replicas: a.proxy_replicas,
            tunnel_replicas: a.tunnel_replicas,
        },
        lease_policy: match a.lease_policy {
            LeasePolicyArg::MissingIsHealthy => LeasePolicy::MissingIsHealthy,
            LeasePolicyArg::Required => LeasePolicy::Required,
        },
        resync: Duration::from_secs(a.resync_seconds),
        debounce: Duration::from_millis(a.debounce_ms),
        concurrency: usize::from(a.concurrency),
        leader: LeaderConfig {
            namespace: WORKING_NAMESPACE.to_owned(),
            name: a.leader_lease,
            identity: identity(a.identity),
            lease_duration: lease,
            renew_every: (lease / 3).max(Duration::from_millis(500)),
        },
        discover_nodepools: !a.no_nodepools,
    }
}

async fn client(kubeconfig: Option<&PathBuf>) -> Result<kube::Client, String> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| format!("no in-cluster configuration and no --kubeconfig: {e}"))?,
    };
    kube::Client::try_from(config).map_err(|e| format!("kube client: {e}"))
}

fn main() -> ExitCode {
    let Command::Run(args) = Args::parse().command;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // One thread: the controller waits on the API server, and a single allocator arena keeps
    // RSS down (measured at 10k nodes: BENCHMARKS.md).
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("raven-controller: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let kubeconfig = args.kubeconfig.clone();
    let metrics_addr = match args.metrics_addr.as_str() {
        "off" => None,
        a => match a.parse::<std::net::SocketAddr>() {
            Ok(a) => Some(a),
            Err(e) => {
                eprintln!("raven-controller: --metrics-addr {a:?}: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let webhooks = webhook_settings(&args);
    let signer = csr_settings(&args);
    let settings = settings(args);
    rt.block_on(async move {
        let client = match client(kubeconfig.as_ref()).await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("raven-controller: {e}");
                return ExitCode::FAILURE;
            }
        };
        if let Some(addr) = metrics_addr {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => {
                    tracing::info!(%addr, "serving /metrics and /healthz");
                    tokio::spawn(runtime::metrics::serve(l));
                }
                Err(e) => {
                    eprintln!("raven-controller: listening on {addr} for metrics: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        if let Some(w) = webhooks {
            // Every replica serves the webhooks, leader or not.
            tokio::spawn(webhook::run(client.clone(), w));
        }
        if let Some(c) = signer {
            // Every replica approves and signs; conflicting writes lose with a 409.
            tokio::spawn(csr::run(client.clone(), c));
        }
        tokio::select! {
            r = runtime::run(client, settings) => match r {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("raven-controller: {e}");
                    ExitCode::FAILURE
                }
            },
            _ = tokio::signal::ctrl_c() => ExitCode::SUCCESS,
        }
    })
}
