//! The scheduler extender over real HTTP on loopback, as kube-scheduler calls it: both node-cache
//! modes, PascalCase answers, and malformed bodies answered 400 with a message.

use agents::k8s::extender::Knowledge;
use agents::k8s::routes::{router, PREFIX};
use placement::containers::{Backend, BucketNeed, Component, Node};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

struct Known;

impl Knowledge for Known {
    fn component(&self, app: &str, component: &str) -> Option<Component> {
        (app == "shop" && component == "search").then(|| Component {
            buckets: vec![BucketNeed {
                bucket: "catalog".into(),
                k: 1,
                eligible: vec!["b1".into(), "b2".into()],
                reads_per_s: 5.0,
                gdpr: true,
                ..BucketNeed::default()
            }],
            ..Component::default()
        })
    }

    fn node(&self, name: &str) -> Option<Node> {
        let rtt = match name {
            "n1" => 2.0,
            "n2" => 40.0,
            _ => return None,
        };
        Some(Node {
            labels: BTreeMap::from([("gdpr".to_owned(), "true".to_owned())]),
            rtt_ms: BTreeMap::from([("b1".to_owned(), rtt), ("b2".to_owned(), rtt * 2.0)]),
            bandwidth_mib_s: BTreeMap::from([("b1".to_owned(), 500.0 / rtt)]),
            ..Node::default()
        })
    }

    fn backends(&self) -> BTreeMap<String, Backend> {
        BTreeMap::from([
            (
                "b1".to_owned(),
                Backend {
                    p95_ms: 5.0,
                    trust: None,
                },
            ),
            (
                "b2".to_owned(),
                Backend {
                    p95_ms: 5.0,
                    trust: None,
                },
            ),
        ])
    }
}

async fn serve() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, router(Arc::new(Known))).await.unwrap() });
    format!("http://{addr}{PREFIX}")
}

fn pod() -> Value {
    json!({"metadata": {"name": "search-0", "labels": {"mlsysops.eu/app": "shop", "mlsysops.eu/component": "search"}}})
}

#[tokio::test]
async fn filter_and_prioritize_in_both_node_cache_modes() {
    let base = serve().await;
    let http = reqwest::Client::new();
    let post = |verb: &str, body: Value| http.post(format!("{base}/{verb}")).json(&body).send();

    // nodeCacheCapable: names in, names out; n3 is unknown here and lacks the gdpr label.
    let r = post("filter", json!({"Pod": pod(), "NodeNames": ["n1", "n2", "n3"]}))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["NodeNames"], json!(["n1", "n2"]), "{v}");
    assert!(
        v["FailedAndUnresolvableNodes"]["n3"].as_str().unwrap().contains("gdpr"),
        "{v}"
    );
    assert_eq!(v["Error"], "");

    // Full nodes: nodes in, nodes out.
    let nodes = json!({"items": [
        {"metadata": {"name": "n1", "labels": {"gdpr": "true"}}},
        {"metadata": {"name": "n3"}}
    ]});
    let v: Value = post("filter", json!({"Pod": pod(), "Nodes": nodes}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kept: Vec<&str> = v["Nodes"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(kept, ["n1"], "{v}");
    assert!(v.get("NodeNames").is_none(), "{v}");

    let v: Value = post("prioritize", json!({"Pod": pod(), "NodeNames": ["n1", "n2"]}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let score = |host: &str| {
        v.as_array().unwrap().iter().find(|h| h["Host"] == host).unwrap()["Score"]
            .as_i64()
            .unwrap()
    };
    assert!(score("n1") > score("n2"), "{v}");
    assert!((0..=10).contains(&score("n1")), "{v}");
}

#[tokio::test]
async fn malformed_args_get_a_400_with_a_message() {
    let base = serve().await;
    let http = reqwest::Client::new();
    for (verb, body) in [
        ("filter", "{not json"),
        ("prioritize", "{\"NodeNames\": 7}"),
        ("filter", "[]"),
    ] {
        let r = http
            .post(format!("{base}/{verb}"))
            .body(body)
            .header("content-type", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{verb} {body}");
        let v: Value = r.json().await.unwrap();
        assert!(v["error"].as_str().unwrap().contains("ExtenderArgs"), "{v}");
    }
}
