//! Wire names shared with OpenYurt: labels, annotations, ConfigMaps and their keys, object names,
//! endpoint and expose types, ports and event reasons.
//!
//! These strings are contracts with components we do not own (OpenYurt's raven-agent and
//! yurt-manager, the raven-proxy-dns CoreDNS, yurthub's service filter, Helm charts). Changing
//! one breaks interoperability with upstream nodes in the same cluster, so they live in one place
//! and are plain `&str`/integer constants: this module compiles without the `kube` feature and is
//! usable from `raven-cni`.

/// API group of the Gateway custom resource.
pub const GROUP: &str = "raven.openyurt.io";
/// Kind of the Gateway custom resource.
pub const GATEWAY_KIND: &str = "Gateway";
/// Plural resource name of the Gateway custom resource.
pub const GATEWAY_PLURAL: &str = "gateways";
/// Full CRD name (`<plural>.<group>`).
pub const GATEWAY_CRD_NAME: &str = "gateways.raven.openyurt.io";
/// Storage (hub) version.
pub const VERSION_V1BETA1: &str = "v1beta1";
/// Older served version, converted to and from the hub by the conversion webhook.
pub const VERSION_V1ALPHA1: &str = "v1alpha1";
/// `apiVersion` of v1beta1 objects.
pub const API_VERSION_V1BETA1: &str = "raven.openyurt.io/v1beta1";
/// `apiVersion` of v1alpha1 objects.
pub const API_VERSION_V1ALPHA1: &str = "raven.openyurt.io/v1alpha1";

/// Namespace of every namespaced object Raven reads or writes (upstream `WorkingNamespace`).
pub const WORKING_NAMESPACE: &str = "kube-system";

// ---------------------------------------------------------------------------------------------
// Labels
// ---------------------------------------------------------------------------------------------

/// Node label naming the Gateway (network domain) a node belongs to. Membership is decided by
/// this label only; `spec.nodeSelector` is informational upstream. Also set on the public
/// Services/Endpoints to name their owning Gateway.
pub const LABEL_GATEWAY: &str = "raven.openyurt.io/gateway";
/// Service/Endpoints label: `proxy` or `tunnel`.
pub const LABEL_GATEWAY_TYPE: &str = "raven.openyurt.io/gateway-type";
/// Service/Endpoints label: node name of the active endpoint the object serves. The identity of a
/// public Service is `"<endpoints-name>-<gateway-type>"`.
pub const LABEL_GATEWAY_ENDPOINTS: &str = "raven.openyurt.io/endpoints-name";
/// Label on the internal proxy Service (`app: raven`).
pub const LABEL_APP: &str = "app";
/// Value of [`LABEL_APP`] on the internal proxy Service.
pub const LABEL_APP_VALUE: &str = "raven";
/// Node label naming the node's NodePool (read by no upstream raven controller).
pub const LABEL_NODEPOOL: &str = "apps.openyurt.io/nodepool";
/// Node label a user sets to ask for a NodePool; copied to [`LABEL_NODEPOOL`] by OpenYurt.
pub const LABEL_DESIRED_NODEPOOL: &str = "apps.openyurt.io/desired-nodepool";

// ---------------------------------------------------------------------------------------------
// Annotations
// ---------------------------------------------------------------------------------------------

/// Gateway annotation: comma-separated CIDRs appended to the subnets of the active tunnel node
/// (non-cluster sources allowed through the tunnel). No spaces, each piece a CIDR.
pub const ANNOTATION_EXTRA_ALLOWED_SOURCE_CIDRS: &str =
    "raven.openyurt.io/extra-allowed-source-cidrs";
/// Service annotation that makes yurthub hide a Service from edge kube-proxy.
pub const ANNOTATION_SERVICE_DISCARD: &str = "svc.openyurt.io/discard";
/// Value of [`ANNOTATION_SERVICE_DISCARD`].
pub const ANNOTATION_SERVICE_DISCARD_VALUE: &str = "true";
/// Proxy LB Service annotation: extra IP SANs (comma list) for the proxy server certificate.
pub const ANNOTATION_PUBLIC_SERVICE_EXTERNAL_IP: &str =
    "raven.openyurt.io/public-service-external-ip";
/// Proxy LB Service annotation: extra DNS SANs (comma list) for the proxy server certificate.
pub const ANNOTATION_PUBLIC_SERVICE_EXTERNAL_DNS_NAME: &str =
    "raven.openyurt.io/public-service-external-dns-name";
/// Ours (not upstream): on a v1alpha1 object, the JSON of the v1beta1 spec that v1alpha1 cannot
/// express. Written by v1beta1→v1alpha1 conversion only when needed and consumed (removed) by
/// v1alpha1→v1beta1 conversion, so round trips do not lose data. Reserved: a v1beta1 object
/// never carries it.
pub const ANNOTATION_V1BETA1_SPEC: &str = "raven.openyurt.io/v1beta1-spec";
/// Ours (not upstream): like [`ANNOTATION_V1BETA1_SPEC`] for `status.activeEndpoints`.
pub const ANNOTATION_V1BETA1_STATUS: &str = "raven.openyurt.io/v1beta1-status";

// ---------------------------------------------------------------------------------------------
// Endpoint `config` keys
// ---------------------------------------------------------------------------------------------

/// Endpoint config key holding the node's WireGuard public key (base64), written by the agent.
pub const CONFIG_PUBLIC_KEY: &str = "publicKey";
/// Key of [`RAVEN_GLOBAL_CONFIG`], and of active proxy endpoints' `config`: L7 proxy enabled.
pub const CONFIG_ENABLE_L7_PROXY: &str = "enable-l7-proxy";
/// Key of [`RAVEN_GLOBAL_CONFIG`], and of active tunnel endpoints' `config`: L3 tunnel enabled.
pub const CONFIG_ENABLE_L3_TUNNEL: &str = "enable-l3-tunnel";
/// The only value that enables a feature (compared case-insensitively, like upstream).
pub const CONFIG_TRUE: &str = "true";
/// What the controller writes for a disabled feature.
pub const CONFIG_FALSE: &str = "false";

// ---------------------------------------------------------------------------------------------
// ConfigMaps
// ---------------------------------------------------------------------------------------------

/// `kube-system/raven-cfg`: cluster-wide switches ([`CONFIG_ENABLE_L7_PROXY`],
/// [`CONFIG_ENABLE_L3_TUNNEL`]). A missing ConfigMap or key disables the feature. Cloud vendors
/// store more keys here: never rewrite the whole map.
pub const RAVEN_GLOBAL_CONFIG: &str = "raven-cfg";
/// `kube-system/raven-agent-config`: addresses (`host:port`) the agents bind.
pub const RAVEN_AGENT_CONFIG: &str = "raven-agent-config";
/// [`RAVEN_AGENT_CONFIG`] key: proxy server external address (LB targetPort), default `:10262`.
pub const AGENT_CONFIG_PROXY_EXTERNAL_ADDR: &str = "proxy-external-addr";
/// [`RAVEN_AGENT_CONFIG`] key: tunnel server bind address, default `:4500`.
pub const AGENT_CONFIG_TUNNEL_BIND_ADDR: &str = "tunnel-bind-addr";
/// [`RAVEN_AGENT_CONFIG`] key: proxy server internal plain-HTTP address, default `:10264`.
pub const AGENT_CONFIG_PROXY_INTERNAL_INSECURE_ADDR: &str = "proxy-internal-insecure-addr";
/// [`RAVEN_AGENT_CONFIG`] key: proxy server internal HTTPS address, default `:10263`.
pub const AGENT_CONFIG_PROXY_INTERNAL_SECURE_ADDR: &str = "proxy-internal-secure-addr";
/// [`RAVEN_AGENT_CONFIG`] key (agent only): VPN driver name.
pub const AGENT_CONFIG_VPN_DRIVER: &str = "vpn-driver";
/// [`RAVEN_AGENT_CONFIG`] key (agent only): also route node IPs (`/32`) across gateways.
pub const AGENT_CONFIG_FORWARD_NODE_IP: &str = "forward-node-ip";
/// [`RAVEN_AGENT_CONFIG`] key (agent only): STUN-based NAT traversal.
pub const AGENT_CONFIG_NAT_TRAVERSAL: &str = "nat-traversal";
/// [`RAVEN_AGENT_CONFIG`] key (agent only): metrics listen address.
pub const AGENT_CONFIG_METRIC_BIND_ADDR: &str = "metric-bind-addr";
/// `kube-system/edge-tunnel-nodes`: hosts file for the raven-proxy-dns CoreDNS.
pub const EDGE_TUNNEL_NODES_CONFIG: &str = "edge-tunnel-nodes";
/// [`EDGE_TUNNEL_NODES_CONFIG`] key: lines `"<ip>\t<nodeName>"`, sorted, joined by `\n`.
pub const EDGE_TUNNEL_NODES_KEY: &str = "tunnel-nodes";

// ---------------------------------------------------------------------------------------------
// Object names
// ---------------------------------------------------------------------------------------------

/// ClusterIP Service (and Endpoints) in front of the proxy servers of exposed Gateways. The DNS
/// ConfigMap maps every node name to its cluster IP.
pub const PROXY_INTERNAL_SERVICE: &str = "x-raven-proxy-internal-svc";
/// Prefix of the per-active-endpoint proxy LoadBalancer Services (`<prefix>-<gw>-<suffix>`).
pub const PROXY_SERVICE_NAME_PREFIX: &str = "x-raven-proxy-svc";
/// Prefix of the per-active-endpoint tunnel LoadBalancer Services (`<prefix>-<gw>-<suffix>`).
pub const TUNNEL_SERVICE_NAME_PREFIX: &str = "x-raven-tunnel-svc";
/// Ours (not upstream, whose webhook is `yurt-manager-webhook-service`): the Service in
/// [`WORKING_NAMESPACE`] through which the API server reaches raven-controller's CRD conversion
/// webhook. Written into the generated CRD; the controller's deployment must match it.
pub const CONVERSION_WEBHOOK_SERVICE: &str = "raven-controller-webhook";
/// HTTP path of the CRD conversion webhook (same as upstream).
pub const CONVERSION_WEBHOOK_PATH: &str = "/convert";
/// Service port of the conversion webhook.
pub const CONVERSION_WEBHOOK_PORT: u16 = 443;
/// Legacy v1alpha1 Service name (`kube-system/raven-agent-service`); used by no controller.
pub const LEGACY_AGENT_SERVICE: &str = "raven-agent-service";
/// Port-name prefix of internal-Service HTTP ports (`http-<port>`).
pub const INTERNAL_SERVICE_HTTP_PORT_PREFIX: &str = "http-";
/// Port-name prefix of internal-Service HTTPS ports (`https-<port>`).
pub const INTERNAL_SERVICE_HTTPS_PORT_PREFIX: &str = "https-";

// ---------------------------------------------------------------------------------------------
// Endpoint and expose types
// ---------------------------------------------------------------------------------------------

/// Endpoint type of an L7 proxy endpoint.
pub const ENDPOINT_TYPE_PROXY: &str = "proxy";
/// Endpoint type of an L3 tunnel endpoint.
pub const ENDPOINT_TYPE_TUNNEL: &str = "tunnel";
/// Expose type: a LoadBalancer Service per active endpoint.
pub const EXPOSE_TYPE_LOAD_BALANCER: &str = "LoadBalancer";
/// Expose type: the endpoint's own public IP.
pub const EXPOSE_TYPE_PUBLIC_IP: &str = "PublicIP";

// ---------------------------------------------------------------------------------------------
// NAT types written by the agent's STUN probe into `spec.endpoints[].natType`
// ---------------------------------------------------------------------------------------------

/// STUN result: no NAT.
pub const NAT_TYPE_OPEN_INTERNET: &str = "Open Internet (no NAT)";
/// STUN result: full cone NAT.
pub const NAT_TYPE_FULL_CONE: &str = "Full cone NAT";
/// STUN result: (address-)restricted cone NAT.
pub const NAT_TYPE_RESTRICTED_CONE: &str = "Restricted cone NAT";
/// STUN result: port-restricted cone NAT.
pub const NAT_TYPE_PORT_RESTRICTED_CONE: &str = "Port Restricted cone NAT";
/// STUN result: symmetric NAT (no usable public port).
pub const NAT_TYPE_SYMMETRIC: &str = "Symmetric NAT";
/// STUN result when the probe could not classify the NAT.
pub const NAT_TYPE_UNDEFINED: &str = "Undefined";

// ---------------------------------------------------------------------------------------------
// Ports
// ---------------------------------------------------------------------------------------------

/// Default `port` of a proxy endpoint, and the proxy server's external port.
pub const DEFAULT_PROXY_SERVER_EXPOSED_PORT: u16 = 10262;
/// Proxy server internal HTTPS port (target of `https-*` internal Service ports).
pub const DEFAULT_PROXY_SERVER_SECURE_PORT: u16 = 10263;
/// Proxy server internal plain-HTTP port (target of `http-*` internal Service ports).
pub const DEFAULT_PROXY_SERVER_INSECURE_PORT: u16 = 10264;
/// Default `port` of a tunnel endpoint, and the tunnel server's UDP port (IPsec NAT-T/WireGuard).
pub const DEFAULT_TUNNEL_SERVER_EXPOSED_PORT: u16 = 4500;
/// Agent metrics port (agent only).
pub const DEFAULT_AGENT_METRICS_PORT: u16 = 10265;
/// Proxy metrics port (agent only).
pub const DEFAULT_PROXY_METRICS_PORT: u16 = 10266;

// ---------------------------------------------------------------------------------------------
// Proxy certificates (ours, not upstream): CSR signers and subjects
// ---------------------------------------------------------------------------------------------

/// CSR `signerName` of proxy client (edge tunnel agent) certificates, approved and signed by
/// raven-controller. Usages exactly `digital signature` + `client auth`.
pub const SIGNER_PROXY_CLIENT: &str = "raven.openyurt.io/proxy-client";
/// CSR `signerName` of proxy server (cloud tunnel/front server) certificates. Usages exactly
/// `digital signature` + `server auth`.
pub const SIGNER_PROXY_SERVER: &str = "raven.openyurt.io/proxy-server";
/// Subject common name prefix of proxy client certificates: `raven-proxy-client:<node>`; the
/// only subject attribute. The proxy server takes the node identity from it.
pub const PROXY_CLIENT_CN_PREFIX: &str = "raven-proxy-client:";
/// Subject common name prefix of proxy server certificates: `raven-proxy-server:<node>`.
pub const PROXY_SERVER_CN_PREFIX: &str = "raven-proxy-server:";
/// Kubernetes' built-in signer for client certificates kube-apiserver trusts (signed by
/// kube-controller-manager with the cluster CA, which kubelets trust too). The proxy front's
/// client certificate towards kubelets comes from it; raven-controller only approves, and
/// only requests whose subject is [`PROXY_FRONT_CN_PREFIX`]`<node>` in [`PROXY_FRONT_GROUP`]:
/// any other request of this signer is not ours and is never touched.
pub const SIGNER_KUBE_APISERVER_CLIENT: &str = "kubernetes.io/kube-apiserver-client";
/// Subject common name prefix of the proxy front's kubelet client certificate:
/// `raven-proxy-front:<node>`, one per proxy-server node (so a leaked key names its node).
pub const PROXY_FRONT_CN_PREFIX: &str = "raven-proxy-front:";
/// Subject organization (Kubernetes group) of the proxy front's kubelet client certificates;
/// `deploy/rbac/node` grants this group the kubelet API and nothing else.
pub const PROXY_FRONT_GROUP: &str = "raven:proxy-fronts";
/// Extra key (user info of a pod-bound ServiceAccount token, copied into CSR `spec.extra`)
/// naming the requesting pod; binds a raven-node request to the node the pod runs on.
pub const EXTRA_POD_NAME: &str = "authentication.kubernetes.io/pod-name";
/// Extra key with the requesting pod's UID (checked against the pod found by name).
pub const EXTRA_POD_UID: &str = "authentication.kubernetes.io/pod-uid";

/// The node a proxy certificate common name names (`None` for another prefix or an empty
/// node).
pub fn node_of_proxy_common_name<'a>(cn: &'a str, prefix: &str) -> Option<&'a str> {
    cn.strip_prefix(prefix).filter(|n| !n.is_empty())
}

// ---------------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------------

/// Normal event: an endpoint was elected active.
pub const EVENT_ACTIVE_ENDPOINT_ELECTED: &str = "ActiveEndpointElected";
/// Warning event: an active endpoint was lost or replaced.
pub const EVENT_ACTIVE_ENDPOINT_LOST: &str = "ActiveEndpointLost";
/// Warning event recorded on a Service/Endpoints whose deletion failed.
pub const EVENT_DELETE_SERVICE_FAIL: &str = "DeleteServiceFail";

/// Whether a `raven-cfg` value enables its feature: upstream compares
/// `strings.ToLower(v) == "true"`; anything else, including a missing key, disables it.
pub fn config_enabled(value: Option<&str>) -> bool {
    value.is_some_and(|v| v.eq_ignore_ascii_case(CONFIG_TRUE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_enabled_matches_upstream_lowercase_compare() {
        let cases = [
            (None, false),
            (Some(""), false),
            (Some("true"), true),
            (Some("TRUE"), true),
            (Some("True"), true),
            (Some(" true"), false),
            (Some("yes"), false),
            (Some("1"), false),
            (Some("false"), false),
        ];
        for (input, want) in cases {
            assert_eq!(config_enabled(input), want, "input {input:?}");
        }
    }

    #[test]
    fn crd_name_is_plural_dot_group() {
        assert_eq!(GATEWAY_CRD_NAME, format!("{GATEWAY_PLURAL}.{GROUP}"));
        assert_eq!(API_VERSION_V1BETA1, format!("{GROUP}/{VERSION_V1BETA1}"));
        assert_eq!(API_VERSION_V1ALPHA1, format!("{GROUP}/{VERSION_V1ALPHA1}"));
    }
}
