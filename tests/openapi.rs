//! `/openapi.json` against what the server really answers: every route the server has is in
//! the document with the methods it allows, and every path and method of the document is served
//! (a request to it gets one of the statuses the document lists for it).

mod common;

use std::collections::BTreeSet;

use common::Broker;
use openhqm::api::route::allow;
use openhqm::metrics::Endpoint;
use serde_json::Value;

const ID: &str = "550e8400-e29b-41d4-a716-446655440000";

fn document(b: &Broker) -> Value {
    let r = b.client().get("/openapi.json");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    r.json()
}

/// The methods a path's item lists (upper case).
fn methods(item: &Value) -> BTreeSet<String> {
    item.as_object()
        .unwrap()
        .keys()
        .filter(|k| *k != "parameters")
        .map(|k| k.to_ascii_uppercase())
        .collect()
}

#[test]
fn every_route_is_documented_with_its_methods() {
    let b = Broker::start();
    let doc = document(&b);
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    let paths = doc["paths"].as_object().unwrap();
    for e in Endpoint::ALL {
        if e == Endpoint::Other {
            continue;
        }
        let item = paths
            .get(e.template())
            .unwrap_or_else(|| panic!("{} is served but not documented", e.template()));
        let served: BTreeSet<String> = allow(e)
            .split(", ")
            .filter(|m| *m != "HEAD" && *m != "OPTIONS")
            .map(str::to_owned)
            .collect();
        assert_eq!(methods(item), served, "{}", e.template());
    }
    let templates: BTreeSet<&str> = Endpoint::ALL.iter().map(|e| e.template()).collect();
    for path in paths.keys() {
        assert!(
            templates.contains(path.as_str()),
            "{path} is documented but has no route"
        );
    }
}

#[test]
fn every_documented_path_and_method_is_served_with_a_documented_status() {
    let b = Broker::start();
    let doc = document(&b);
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in methods(item) {
            let op = &item[method.to_ascii_lowercase()];
            let statuses: BTreeSet<u16> = op["responses"]
                .as_object()
                .unwrap()
                .keys()
                .map(|s| s.parse().unwrap())
                .collect();
            let concrete = path.replace("{correlation_id}", ID);
            let body: &[u8] = match path.as_str() {
                "/api/v1/submit" => br#"{"payload":{"operation":"echo","data":"x"}}"#,
                "/api/v1/submit/batch" => br#"{"requests":[{"payload":{}}]}"#,
                _ => b"",
            };
            let headers: &[(&str, &str)] = if body.is_empty() {
                &[]
            } else {
                &[("Content-Type", "application/json")]
            };
            let r = b.client().request(&method, &concrete, headers, body);
            assert!(
                statuses.contains(&r.status),
                "{method} {path}: {} is not among the documented {statuses:?}: {}",
                r.status,
                r.text()
            );
        }
    }
}
