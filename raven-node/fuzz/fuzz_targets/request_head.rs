//! Fuzzes the proxy front side's request-head layer: the raw scan (`scan_raw_head`) and,
//! on the head hyper would hand over, the validation and routing plan (`plan`), checking the
//! invariants the relay relies on: never a panic, the scan agrees with httparse on the head
//! length, and an accepted plan forwards no hop-by-hop or internal header, routes to a valid
//! node name and a non-zero port, and sends an origin-form target without `nodeName`.
#![no_main]

#[path = "../../src/proxy/front/head.rs"]
#[allow(dead_code)]
mod head;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Uri, Version};
use libfuzzer_sys::fuzz_target;

use head::{Context, RawHead, Target};

fuzz_target!(|data: &[u8]| {
    let RawHead::Complete { len, .. } = head::scan_raw_head(data) else {
        return;
    };
    assert!(len <= data.len());
    let mut storage = [httparse::EMPTY_HEADER; head::MAX_HEADERS];
    let mut req = httparse::Request::new(&mut storage);
    match req.parse(data) {
        Ok(httparse::Status::Complete(n)) => assert_eq!(n, len),
        other => panic!("scan said complete, httparse said {other:?}"),
    }
    // Build the parsed view the way hyper does (it drops Content-Length beside
    // Transfer-Encoding); give up where hyper would refuse.
    let (Some(method), Some(path), Some(version)) = (req.method, req.path, req.version) else {
        return;
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return;
    };
    let Ok(uri) = path.parse::<Uri>() else { return };
    let version = if version == 1 {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    let has_te = req
        .headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("transfer-encoding"));
    let mut headers = HeaderMap::new();
    for h in req.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_bytes(h.value),
        ) else {
            return;
        };
        if has_te && name == http::header::CONTENT_LENGTH {
            continue;
        }
        headers.append(name, value);
    }
    for by_pod in [false, true] {
        let ctx = Context {
            default_port: 10250,
            route_kubelet_paths_by_pod: by_pod,
            kubelet_port: 10250,
        };
        let Ok(plan) = head::plan(&method, &uri, version, &headers, &ctx) else {
            continue;
        };
        assert!(plan.port != 0);
        if let Target::Node(node) = &plan.target {
            assert!(head::check_node_name(node).is_ok(), "{node:?}");
        }
        assert!(plan.path_and_query.starts_with('/'));
        assert!(
            plan.path_and_query.parse::<Uri>().is_ok(),
            "{:?}",
            plan.path_and_query
        );
        if let Some((_, q)) = plan.path_and_query.split_once('?') {
            assert!(!q.split('&').any(|p| p.starts_with("nodeName=")), "{q}");
        }
        for name in plan.headers.keys() {
            let n = name.as_str();
            assert!(!head::is_internal_header(n), "{n}");
            assert!(
                !matches!(
                    n,
                    "connection"
                        | "upgrade"
                        | "transfer-encoding"
                        | "host"
                        | "te"
                        | "keep-alive"
                        | "proxy-authorization"
                        | "expect"
                ),
                "{n}"
            );
        }
        let _ = head::response_headers(http::StatusCode::FOUND, &headers, plan.upgrade.as_ref());
        let _ = head::response_headers(
            http::StatusCode::SWITCHING_PROTOCOLS,
            &headers,
            plan.upgrade.as_ref(),
        );
    }
});
