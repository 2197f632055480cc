//! The gateway's in-process nodeAffinity controller against a fake Kubernetes API server
//! (agents/tests/support/fake_apiserver.rs: no real API server can run on these machines),
//! reached the way a real one is, through `KUBECONFIG`: an `MLSysOpsApp` resource declares its
//! bucket to the agents, the cluster agent places its component on the machine its node agent
//! reports, the controller writes that machine into the component's Deployment as a
//! nodeAffinity preference with the decision as the reason, and deleting the resource
//! withdraws the app and removes the preference.

#[path = "../../agents/tests/support/fake_apiserver.rs"]
mod fake_apiserver;

use std::time::Duration;

use fake_apiserver::FakeApiServer;
use s3_compat_tests::*;
use serde_json::{json, Value};

const NS: &str = "shop";

fn deployment(name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": name },
        "spec": {
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [{ "name": "main", "image": "reg/infer:1" }] },
            },
        },
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_mlsysopsapp_declares_its_bucket_and_its_deployment_gets_the_placed_machine() {
    let (api, url) = FakeApiServer::start().await;
    api.put("deployments", NS, deployment("infer"));
    let root = tempfile::tempdir().unwrap();
    let kubeconfig = root.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {url}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: {NS}\n\
             current-context: fake\nusers:\n- name: fake\n  user: {{}}\n"
        ),
    )
    .unwrap();
    let srv = TestServer::start(
        ServerOptions::new()
            .local_backends(3)
            .default_policy("ec-2-1")
            .flag("--agent-period-secs", 1)
            .flag("--agent-cooldown-secs", 2)
            .flag("--audit-interval-secs", 1)
            .env("KUBECONFIG", kubeconfig.to_str().unwrap())
            .config_toml(format!(
                "[agents.node]\nmachine = \"node-a\"\n\
                 [agents.kubernetes]\ncontroller = true\nnamespace = \"{NS}\"\nrequeue_secs = 1\n"
            )),
    );

    api.put(
        "mlsysopsapps",
        NS,
        json!({
            "apiVersion": "mlsysops.eu/v1", "kind": "MLSysOpsApp",
            "metadata": { "name": "photo" },
            "spec": {
                "components": [{ "name": "infer", "buckets": ["photos"] }],
                "buckets": [{ "bucket_id": "photos", "redundancy": "one", "max_latency": 500 }],
            },
        }),
    );

    // The resource's bucket reaches the agents as the app's descriptor.
    until(Duration::from_secs(60), "the bucket's intent applied", || async {
        let (_, v) = srv.admin("GET", "/api/v1/buckets/photos/intent").await;
        if v["state"] == "applied" && v["source"] == "app:photo" {
            Ok(())
        } else {
            Err(v.to_string())
        }
    })
    .await;

    // The cluster places the component on the one machine reporting; the controller writes it.
    let preferred = until(Duration::from_secs(60), "the Deployment's preference", || async {
        let d = api.get("deployments", NS, "infer").unwrap();
        let p = d["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
            ["preferredDuringSchedulingIgnoredDuringExecution"]
            .clone();
        if p.is_array() {
            Ok(p)
        } else {
            Err(d.to_string())
        }
    })
    .await;
    assert_eq!(
        preferred,
        json!([{ "weight": 100, "preference": { "matchExpressions": [
            { "key": "kubernetes.io/hostname", "operator": "In", "values": ["node-a"] }
        ] } }]),
    );
    let status = until(Duration::from_secs(30), "the status", || async {
        let app = api.get("mlsysopsapps", NS, "photo").unwrap();
        let s = app["status"]["components"][0].clone();
        if s["preferred"].is_array() {
            Ok(s)
        } else {
            Err(app.to_string())
        }
    })
    .await;
    let reason = status["reason"].as_str().unwrap();
    assert!(reason.starts_with("decision "), "{reason}");
    assert!(reason.contains("photo/infer: placed on node-a"), "{reason}");
    // The decision the reason names is in the log.
    let id = reason["decision ".len()..].split(':').next().unwrap();
    let (code, d) = srv.admin("GET", &format!("/api/v1/decisions/{id}")).await;
    assert_eq!(code, 200, "{d}");
    assert_eq!(d["policy"], "container_placement");

    // Deleting the resource withdraws the app (its bucket stays) and the preference.
    api.delete("mlsysopsapps", NS, "photo");
    until(Duration::from_secs(30), "the app withdrawn", || async {
        let (code, v) = srv.admin("GET", "/api/v1/apps/photo").await;
        if code == 404 {
            Ok(())
        } else {
            Err(v.to_string())
        }
    })
    .await;
    until(Duration::from_secs(30), "the preference removed", || async {
        let d = api.get("deployments", NS, "infer").unwrap();
        if d["spec"]["template"]["spec"]["affinity"].is_null()
            || d["spec"]["template"]["spec"]["affinity"]["nodeAffinity"].is_null()
        {
            Ok(())
        } else {
            Err(d.to_string())
        }
    })
    .await;
    let (code, _) = srv.admin("GET", "/api/v1/buckets/photos/storage-policy").await;
    assert_eq!(code, 200, "the bucket stays");
}
