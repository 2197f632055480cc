//! The nodeAffinity controller against a fake Kubernetes API server (tests/support): a real
//! `kube::Client` over HTTP on 127.0.0.1, real watch streams, real 409s.

mod support {
    pub mod fake_apiserver;
}

use agents::k8s::controller::{AffinityController, ControllerConfig, Declarer, Placement, Placer, PLACED_BY};
use kube::{Client, Config};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::fake_apiserver::FakeApiServer;
use tokio_util::sync::CancellationToken;

const NS: &str = "shop";
const APPS: &str = "mlsysopsapps";
const DEPLOYS: &str = "deployments";

/// A placer answering what the test set.
#[derive(Default)]
struct TestPlacer(Mutex<BTreeMap<(String, String), Placement>>);

impl TestPlacer {
    fn set(&self, app: &str, component: &str, required: &[&str], preferred: &[(&str, i32)]) {
        let p = Placement {
            required: required.iter().map(|s| (*s).to_owned()).collect(),
            preferred: preferred.iter().map(|(n, w)| ((*n).to_owned(), *w)).collect(),
            reason: format!("test placement for {component}"),
        };
        self.0.lock().unwrap().insert((app.into(), component.into()), p);
    }
}

impl Placer for TestPlacer {
    fn place(&self, app: &str, component: &str) -> Option<Placement> {
        self.0
            .lock()
            .unwrap()
            .get(&(app.to_owned(), component.to_owned()))
            .cloned()
    }
}

struct Harness {
    api: Arc<FakeApiServer>,
    placer: Arc<TestPlacer>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// A declarer recording what it was given, refusing apps named `refused`.
#[derive(Default)]
struct TestDeclarer {
    calls: Mutex<Vec<(String, Option<Value>)>>,
}

#[async_trait::async_trait]
impl Declarer for TestDeclarer {
    async fn declare(&self, app: &str, descriptor: Value) -> Result<(), String> {
        self.calls.lock().unwrap().push((app.into(), Some(descriptor)));
        if app == "refused" {
            return Err("bucket photos is already managed by app:other; remove that app first".into());
        }
        Ok(())
    }

    async fn withdraw(&self, app: &str) -> Result<(), String> {
        self.calls.lock().unwrap().push((app.into(), None));
        Ok(())
    }
}

impl Harness {
    async fn start(deployments: &[Value]) -> Self {
        Self::start_with(deployments, None).await
    }

    async fn start_with(deployments: &[Value], declarer: Option<Arc<TestDeclarer>>) -> Self {
        let (api, url) = FakeApiServer::start().await;
        for d in deployments {
            api.put(DEPLOYS, NS, d.clone());
        }
        agents::k8s::controller::install_crypto_provider();
        let client = Client::try_from(Config::new(url.parse().unwrap())).unwrap();
        let placer = Arc::new(TestPlacer::default());
        let config = ControllerConfig {
            namespace: NS.into(),
            requeue: Duration::from_millis(200),
            backoff_base: Duration::from_millis(50),
            backoff_max: Duration::from_secs(1),
            conflict_retries: 5,
        };
        let stop = CancellationToken::new();
        let mut controller = AffinityController::new(client, placer.clone(), config);
        if let Some(d) = declarer {
            controller = controller.with_declarer(d);
        }
        let task = tokio::spawn(controller.run(stop.clone()));
        Self {
            api,
            placer,
            stop,
            task,
        }
    }

    fn deployment(&self, name: &str) -> Value {
        self.api.get(DEPLOYS, NS, name).expect("deployment exists")
    }

    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .unwrap()
            .unwrap();
    }
}

fn deployment(name: &str, affinity: Option<Value>) -> Value {
    let mut spec = json!({ "containers": [{ "name": "main", "image": "example/app:1" }] });
    if let Some(a) = affinity {
        spec["affinity"] = a;
    }
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": name },
        "spec": {
            "selector": { "matchLabels": { "app": name } },
            "template": { "metadata": { "labels": { "app": name } }, "spec": spec },
        },
    })
}

fn app(name: &str, components: Value) -> Value {
    json!({
        "apiVersion": "mlsysops.eu/v1", "kind": "MLSysOpsApp",
        "metadata": { "name": name },
        "spec": { "components": components },
    })
}

fn node_affinity(d: &Value) -> Value {
    d["spec"]["template"]["spec"]["affinity"]["nodeAffinity"].clone()
}

fn hostname_in(nodes: &[&str]) -> Value {
    json!({ "key": "kubernetes.io/hostname", "operator": "In", "values": nodes })
}

/// Polls `cond` until it holds; panics with `what` after a generous bound.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn expected_affinity(required: &[&str], preferred: &[(&str, i32)]) -> Value {
    let pref: Vec<Value> = preferred
        .iter()
        .map(|(n, w)| json!({ "weight": w, "preference": { "matchExpressions": [hostname_in(&[n])] } }))
        .collect();
    json!({
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{ "matchExpressions": [hostname_in(required)] }],
        },
        "preferredDuringSchedulingIgnoredDuringExecution": pref,
    })
}

#[tokio::test]
async fn creating_an_app_patches_the_deployments_node_affinity_once() {
    let h = Harness::start(&[deployment("web-deploy", None)]).await;
    h.placer.set("shop-app", "web", &["n1", "n2"], &[("n1", 80)]);
    h.api.put(
        APPS,
        NS,
        app(
            "shop-app",
            json!([{ "name": "web", "deployment": "web-deploy", "buckets": ["photos"] }]),
        ),
    );
    let want = expected_affinity(&["n1", "n2"], &[("n1", 80)]);
    until("the affinity patch", || {
        node_affinity(&h.deployment("web-deploy")) == want
    })
    .await;

    let d = h.deployment("web-deploy");
    let mark: Value = serde_json::from_str(d["metadata"]["annotations"][PLACED_BY].as_str().unwrap()).unwrap();
    assert_eq!(mark["app"], "shop/shop-app");
    assert_eq!(mark["component"], "web");
    // The patch was pinned to the version it was computed from.
    let patch = h.api.last_patch(DEPLOYS).unwrap();
    assert!(patch["metadata"]["resourceVersion"].is_string(), "{patch}");

    until("the status", || {
        let st = &h.api.get(APPS, NS, "shop-app").unwrap()["status"]["components"][0];
        st["required"] == json!(["n1", "n2"]) && st["reason"] == "test placement for web"
    })
    .await;
    assert_eq!(
        h.api.get(APPS, NS, "shop-app").unwrap()["status"]["components"][0]["deployment"],
        "web-deploy"
    );

    // Several requeue rounds read the Deployment again but find nothing to change.
    let patches = h.api.patches(DEPLOYS);
    let gets = h.api.gets();
    until("three more reconcile rounds", || h.api.gets() >= gets + 3).await;
    assert_eq!(
        h.api.patches(DEPLOYS),
        patches,
        "an unchanged placement was patched again"
    );
    h.stop().await;
}

#[tokio::test]
async fn a_new_placement_replaces_the_previous_patch() {
    let h = Harness::start(&[deployment("web", None)]).await;
    h.placer.set("a", "web", &["n1"], &[("n1", 50)]);
    h.api.put(APPS, NS, app("a", json!([{ "name": "web" }])));
    until("the first placement", || {
        node_affinity(&h.deployment("web")) == expected_affinity(&["n1"], &[("n1", 50)])
    })
    .await;

    h.placer.set("a", "web", &["n3"], &[("n3", 100), ("n4", 10)]);
    let want = expected_affinity(&["n3"], &[("n3", 100), ("n4", 10)]);
    // Picked up on a requeue: nothing about the app itself changed.
    until("the second placement", || node_affinity(&h.deployment("web")) == want).await;
    until("the status", || {
        h.api.get(APPS, NS, "a").unwrap()["status"]["components"][0]["required"] == json!(["n3"])
    })
    .await;
    h.stop().await;
}

#[tokio::test]
async fn an_injected_conflict_is_retried_after_a_fresh_read() {
    let h = Harness::start(&[deployment("web", None)]).await;
    h.placer.set("a", "web", &["n1"], &[]);
    h.api.inject_conflicts(2);
    h.api.put(APPS, NS, app("a", json!([{ "name": "web" }])));
    let want = json!({
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{ "matchExpressions": [hostname_in(&["n1"])] }],
        },
    });
    until("the patch after the conflicts", || {
        node_affinity(&h.deployment("web")) == want
    })
    .await;
    assert_eq!(h.api.conflicts_served(), 2);
    h.stop().await;
}

#[tokio::test]
async fn a_stale_write_is_refused_and_redone_over_the_new_version() {
    let h = Harness::start(&[deployment("web", None)]).await;
    h.placer.set("a", "web", &["n1"], &[]);
    h.api.put(APPS, NS, app("a", json!([{ "name": "web" }])));
    until("the first placement", || {
        h.deployment("web")["metadata"]["annotations"][PLACED_BY].is_string()
    })
    .await;

    // Someone replaces the Deployment's template (dropping our affinity) and adds their own.
    let user = json!({ "nodeAffinity": { "preferredDuringSchedulingIgnoredDuringExecution": [
        { "weight": 5, "preference": { "matchExpressions": [
            { "key": "zone", "operator": "In", "values": ["z1"] }] } }] } });
    let mut d = deployment("web", Some(user));
    d["metadata"]["annotations"] = h.deployment("web")["metadata"]["annotations"].clone();
    h.api.put(DEPLOYS, NS, d);
    // The controller writes its terms again, next to the user's.
    until("the placement restored beside the user's term", || {
        let a = node_affinity(&h.deployment("web"));
        a["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]["matchExpressions"]
            == json!([hostname_in(&["n1"])])
            && a["preferredDuringSchedulingIgnoredDuringExecution"][0]["weight"] == 5
    })
    .await;
    h.stop().await;
}

#[tokio::test]
async fn a_watch_restart_is_survived_and_a_deletion_missed_meanwhile_is_cleaned_up() {
    let h = Harness::start(&[deployment("web", None), deployment("db", None)]).await;
    h.placer.set("a", "web", &["n1"], &[]);
    h.placer.set("b", "db", &["n2"], &[]);
    h.api.put(APPS, NS, app("a", json!([{ "name": "web" }])));
    until("app a placed", || {
        h.deployment("web")["metadata"]["annotations"][PLACED_BY].is_string()
    })
    .await;
    let watches = h.api.watches_started();

    // The watch ends: the controller opens a new one and sees apps created after.
    h.api.end_watches();
    until("a new watch", || h.api.watches_started() > watches).await;
    h.api.put(APPS, NS, app("b", json!([{ "name": "db" }])));
    until("app b placed", || {
        h.deployment("db")["metadata"]["annotations"][PLACED_BY].is_string()
    })
    .await;

    // History is lost (410 Gone on the next watch) and app a is deleted meanwhile: the relist
    // no longer shows it, so its affinity goes.
    h.api.compact();
    h.api.delete(APPS, NS, "a");
    h.api.end_watches();
    until("app a's affinity removed", || {
        node_affinity(&h.deployment("web")).is_null()
    })
    .await;
    assert!(h.deployment("web")["metadata"]["annotations"][PLACED_BY].is_null());
    assert!(
        h.deployment("db")["metadata"]["annotations"][PLACED_BY].is_string(),
        "app b kept"
    );
    h.stop().await;
}

#[tokio::test]
async fn deleting_the_app_removes_only_the_controllers_affinity() {
    let user = json!({ "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": { "nodeSelectorTerms": [
            { "matchExpressions": [{ "key": "zone", "operator": "In", "values": ["z1", "z2"] }] },
            { "matchExpressions": [{ "key": "gpu", "operator": "Exists" }] },
        ] },
        "preferredDuringSchedulingIgnoredDuringExecution": [
            { "weight": 7, "preference": { "matchExpressions": [
                { "key": "zone", "operator": "In", "values": ["z1"] }] } },
        ],
    } });
    let h = Harness::start(&[deployment("web", Some(user.clone()))]).await;
    h.placer.set("a", "web", &["n1"], &[("n1", 60)]);
    h.api.put(APPS, NS, app("a", json!([{ "name": "web" }])));
    until("the placement", || {
        h.deployment("web")["metadata"]["annotations"][PLACED_BY].is_string()
    })
    .await;

    // Ours is ANDed into each of the user's terms (not ORed beside them) and appended.
    let a = node_affinity(&h.deployment("web"));
    let terms = &a["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"];
    assert_eq!(terms.as_array().unwrap().len(), 2, "{a}");
    assert_eq!(terms[0]["matchExpressions"][1], hostname_in(&["n1"]));
    assert_eq!(terms[1]["matchExpressions"][1], hostname_in(&["n1"]));
    assert_eq!(
        a["preferredDuringSchedulingIgnoredDuringExecution"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    h.api.delete(APPS, NS, "a");
    until("the controller's terms removed", || {
        h.deployment("web")["metadata"]["annotations"][PLACED_BY].is_null()
    })
    .await;
    assert_eq!(node_affinity(&h.deployment("web")), user["nodeAffinity"]);
    h.stop().await;
}

#[tokio::test]
async fn an_apps_buckets_are_declared_once_per_change_and_withdrawn_on_delete() {
    let declarer = Arc::new(TestDeclarer::default());
    let h = Harness::start_with(&[deployment("infer", None)], Some(declarer.clone())).await;
    h.placer.set("photo", "infer", &[], &[("n1", 100)]);
    let mut resource = app("photo", json!([{ "name": "infer", "buckets": ["photos"] }]));
    resource["spec"]["buckets"] = json!([{
        "bucket_id": "photos", "redundancy": "one", "max_latency": 100,
        "location_restrictions": {"gdpr": true}, "min_trust": 0.6
    }]);
    h.api.put(APPS, NS, resource.clone());
    until("the declaration", || !declarer.calls.lock().unwrap().is_empty()).await;
    let (name, descriptor) = declarer.calls.lock().unwrap()[0].clone();
    assert_eq!(name, "photo");
    // What the controller declares is an app descriptor the agents accept as it is.
    let parsed = agents::descriptor::from_value(&descriptor.unwrap()).unwrap();
    assert_eq!(parsed.components, ["infer"]);
    assert_eq!(parsed.buckets[0].bucket, "photos");
    assert_eq!(parsed.buckets[0].component, "infer");
    assert_eq!(parsed.buckets[0].intent.max_latency, Some(100));
    assert!(parsed.buckets[0].intent.gdpr);

    // Requeue rounds do not declare an unchanged app again; a change does.
    let gets = h.api.gets();
    until("three more reconcile rounds", || h.api.gets() >= gets + 3).await;
    assert_eq!(declarer.calls.lock().unwrap().len(), 1);
    resource["spec"]["buckets"][0]["max_latency"] = json!(50);
    h.api.put(APPS, NS, resource);
    until("the new declaration", || declarer.calls.lock().unwrap().len() == 2).await;

    h.api.delete(APPS, NS, "photo");
    until("the withdrawal", || {
        declarer
            .calls
            .lock()
            .unwrap()
            .last()
            .is_some_and(|(n, d)| n == "photo" && d.is_none())
    })
    .await;
    h.stop().await;
}

#[tokio::test]
async fn a_refused_declaration_shows_in_the_status() {
    let declarer = Arc::new(TestDeclarer::default());
    let h = Harness::start_with(&[deployment("infer", None)], Some(declarer)).await;
    let mut resource = app("refused", json!([{ "name": "infer", "buckets": ["photos"] }]));
    resource["spec"]["buckets"] = json!([{ "bucket_id": "photos" }]);
    h.api.put(APPS, NS, resource);
    until("the error in the status", || {
        h.api.get(APPS, NS, "refused").unwrap()["status"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("already managed by app:other"))
    })
    .await;
    h.stop().await;
}
