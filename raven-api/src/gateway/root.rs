//! The top-level `Gateway` object shared by both versions: metadata + spec + optional status,
//! with the kube `Resource`, `HasSpec` and `HasStatus` impls.
//!
//! Written by hand instead of with `#[derive(CustomResource)]` for two wire reasons: Go tolerates
//! an object without `spec` (the v1beta1 schema does not require it) and so must we (one odd
//! object must not break a whole list/watch), and the CRD needs both versions with hand-chosen
//! printer columns and conversion settings anyway (see [`super::crd`]).

/// Defines `Gateway` for one API version in the calling module, around that module's
/// `GatewaySpec` and `GatewayStatus`.
macro_rules! gateway_root {
    ($version:expr, $api_version:expr) => {
        /// A Raven Gateway: one network domain (the nodes labelled
        /// `raven.openyurt.io/gateway=<name>`), its candidate gateway endpoints and, in status,
        /// its member nodes and elected active endpoints. Cluster-scoped.
        #[derive(Clone, Debug, Default, PartialEq, serde::Deserialize)]
        pub struct Gateway {
            /// Standard object metadata; `name` is the Gateway (network domain) name.
            #[serde(default)]
            pub metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
            /// Desired state. Absent or `null` reads as the default, like Go.
            #[serde(
                default,
                deserialize_with = "crate::gateway::serde_util::null_as_default"
            )]
            pub spec: GatewaySpec,
            /// Observed state, written by the controller through the status subresource.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub status: Option<GatewayStatus>,
        }

        impl Gateway {
            /// A Gateway with this name and spec, no status.
            pub fn new(name: &str, spec: GatewaySpec) -> Self {
                Gateway {
                    metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                        name: Some(name.to_owned()),
                        ..Default::default()
                    },
                    spec,
                    status: None,
                }
            }

            /// The object name, `""` when unset (only in malformed input).
            pub fn name(&self) -> &str {
                self.metadata.name.as_deref().unwrap_or_default()
            }
        }

        /// Always writes `apiVersion` and `kind` (the API server and Go decoders need them) and
        /// always writes `spec` (Go has no pointer there, so it always sends one).
        impl serde::Serialize for Gateway {
            fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeStruct;
                let fields = 4 + usize::from(self.status.is_some());
                let mut obj = ser.serialize_struct("Gateway", fields)?;
                obj.serialize_field("apiVersion", $api_version)?;
                obj.serialize_field("kind", crate::wellknown::GATEWAY_KIND)?;
                obj.serialize_field("metadata", &self.metadata)?;
                obj.serialize_field("spec", &self.spec)?;
                if let Some(status) = &self.status {
                    obj.serialize_field("status", status)?;
                }
                obj.end()
            }
        }

        impl kube::Resource for Gateway {
            type DynamicType = ();
            type Scope = kube::core::ClusterResourceScope;

            fn kind(_: &()) -> std::borrow::Cow<'_, str> {
                std::borrow::Cow::Borrowed(crate::wellknown::GATEWAY_KIND)
            }

            fn group(_: &()) -> std::borrow::Cow<'_, str> {
                std::borrow::Cow::Borrowed(crate::wellknown::GROUP)
            }

            fn version(_: &()) -> std::borrow::Cow<'_, str> {
                std::borrow::Cow::Borrowed($version)
            }

            fn api_version(_: &()) -> std::borrow::Cow<'_, str> {
                std::borrow::Cow::Borrowed($api_version)
            }

            fn plural(_: &()) -> std::borrow::Cow<'_, str> {
                std::borrow::Cow::Borrowed(crate::wellknown::GATEWAY_PLURAL)
            }

            fn meta(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &self.metadata
            }

            fn meta_mut(
                &mut self,
            ) -> &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &mut self.metadata
            }
        }

        impl kube::core::object::HasSpec for Gateway {
            type Spec = GatewaySpec;

            fn spec(&self) -> &GatewaySpec {
                &self.spec
            }

            fn spec_mut(&mut self) -> &mut GatewaySpec {
                &mut self.spec
            }
        }

        impl kube::core::object::HasStatus for Gateway {
            type Status = GatewayStatus;

            fn status(&self) -> Option<&GatewayStatus> {
                self.status.as_ref()
            }

            fn status_mut(&mut self) -> &mut Option<GatewayStatus> {
                &mut self.status
            }
        }
    };
}

pub(crate) use gateway_root;
