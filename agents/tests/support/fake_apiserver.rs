//! A fake Kubernetes API server for controller tests: in-memory namespaced objects under
//! `/apis/{group}/{version}/namespaces/{ns}/{plural}`, one resourceVersion counter, list,
//! `?watch=true` streams of newline-delimited watch events from a given resourceVersion,
//! JSON merge PATCH (of the object or its `/status`) refused with 409 when the patch carries a
//! stale `metadata.resourceVersion`. Only what the controller uses; no auth, no discovery.
//!
//! Hooks for faults: [`FakeApiServer::inject_conflicts`] refuses the next patches with 409,
//! [`FakeApiServer::end_watches`] ends every open watch stream (the client must restart it),
//! [`FakeApiServer::compact`] forgets history so older watches get a 410 Gone event.

#![allow(dead_code)]

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

type Key = (String, String, String);

/// One change, as a watch reports it.
#[derive(Clone)]
struct Change {
    rv: u64,
    plural: String,
    ns: String,
    kind: &'static str,
    object: Value,
}

#[derive(Default)]
struct Inner {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    log: Vec<Change>,
    /// Watches from before this version get 410 Gone.
    oldest: u64,
    conflicts_to_inject: u32,
    conflicts_served: u32,
    patches: Vec<(String, String, Value)>,
    watches_started: u32,
    gets: u32,
}

/// The fake server's state; clone the `Arc` to drive it from a test.
pub struct FakeApiServer {
    inner: Mutex<Inner>,
    changed: watch::Sender<u64>,
    end: Mutex<CancellationToken>,
}

fn status(code: StatusCode, reason: &str, message: String) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16(),
    });
    (code, axum::Json(body)).into_response()
}

/// RFC 7386 JSON merge patch.
fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let t = target.as_object_mut().expect("object");
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

impl FakeApiServer {
    /// Starts the server on 127.0.0.1:0; returns its state and base URL.
    pub async fn start() -> (Arc<Self>, String) {
        let (changed, _) = watch::channel(0);
        let me = Arc::new(Self {
            inner: Mutex::new(Inner::default()),
            changed,
            end: Mutex::new(CancellationToken::new()),
        });
        let app = Router::new()
            .route("/apis/{group}/{version}/namespaces/{ns}/{plural}", get(list_or_watch))
            .route(
                "/apis/{group}/{version}/namespaces/{ns}/{plural}/{name}",
                get(get_one).patch(patch_one),
            )
            .route(
                "/apis/{group}/{version}/namespaces/{ns}/{plural}/{name}/status",
                axum::routing::patch(patch_status),
            )
            .layer(DefaultBodyLimit::max(1 << 20))
            .with_state(me.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("fake apiserver");
        });
        (me, url)
    }

    fn record(&self, inner: &mut Inner, plural: &str, ns: &str, kind: &'static str, object: Value) {
        inner.log.push(Change {
            rv: inner.rv,
            plural: plural.into(),
            ns: ns.into(),
            kind,
            object,
        });
        self.changed.send_replace(inner.rv);
    }

    /// Creates or replaces `object` (its `metadata.name`) in `plural`/`ns`; returns its new
    /// resourceVersion.
    pub fn put(&self, plural: &str, ns: &str, mut object: Value) -> u64 {
        let mut inner = self.inner.lock().expect("lock");
        inner.rv += 1;
        let rv = inner.rv;
        let name = object["metadata"]["name"].as_str().expect("metadata.name").to_owned();
        object["metadata"]["namespace"] = json!(ns);
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        if object["metadata"]["uid"].is_null() {
            object["metadata"]["uid"] = json!(format!("uid-{plural}-{name}"));
        }
        let key = (plural.to_owned(), ns.to_owned(), name);
        let kind = if inner.objects.contains_key(&key) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        inner.objects.insert(key, object.clone());
        self.record(&mut inner, plural, ns, kind, object);
        rv
    }

    /// Deletes an object; false if there was none.
    pub fn delete(&self, plural: &str, ns: &str, name: &str) -> bool {
        let mut inner = self.inner.lock().expect("lock");
        let key = (plural.to_owned(), ns.to_owned(), name.to_owned());
        let Some(mut object) = inner.objects.remove(&key) else {
            return false;
        };
        inner.rv += 1;
        object["metadata"]["resourceVersion"] = json!(inner.rv.to_string());
        self.record(&mut inner, plural, ns, "DELETED", object);
        true
    }

    /// The stored object.
    pub fn get(&self, plural: &str, ns: &str, name: &str) -> Option<Value> {
        let inner = self.inner.lock().expect("lock");
        inner
            .objects
            .get(&(plural.to_owned(), ns.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Refuses the next `n` patches with 409 Conflict, whatever their resourceVersion.
    pub fn inject_conflicts(&self, n: u32) {
        self.inner.lock().expect("lock").conflicts_to_inject = n;
    }

    /// How many patches were refused with 409 (injected or stale).
    pub fn conflicts_served(&self) -> u32 {
        self.inner.lock().expect("lock").conflicts_served
    }

    /// Patches applied to `plural` (not counting refused ones).
    pub fn patches(&self, plural: &str) -> usize {
        self.inner
            .lock()
            .expect("lock")
            .patches
            .iter()
            .filter(|(p, _, _)| p == plural)
            .count()
    }

    /// The body of the last patch applied to `plural`.
    pub fn last_patch(&self, plural: &str) -> Option<Value> {
        let inner = self.inner.lock().expect("lock");
        inner
            .patches
            .iter()
            .rev()
            .find(|(p, _, _)| p == plural)
            .map(|(_, _, v)| v.clone())
    }

    /// How many single-object GETs were served.
    pub fn gets(&self) -> u32 {
        self.inner.lock().expect("lock").gets
    }

    /// How many watch streams were opened.
    pub fn watches_started(&self) -> u32 {
        self.inner.lock().expect("lock").watches_started
    }

    /// Ends every open watch stream.
    pub fn end_watches(&self) {
        let mut end = self.end.lock().expect("lock");
        end.cancel();
        *end = CancellationToken::new();
    }

    /// Forgets the change history: a watch from any version handed out so far gets 410 Gone.
    pub fn compact(&self) {
        let mut inner = self.inner.lock().expect("lock");
        inner.log.clear();
        inner.oldest = inner.rv + 1;
    }
}

async fn list_or_watch(
    State(s): State<Arc<FakeApiServer>>,
    Path((_group, _version, ns, plural)): Path<(String, String, String, String)>,
    uri: Uri,
) -> Response {
    let q: HashMap<String, String> = url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    if q.get("watch").is_some_and(|w| w == "true" || w == "1") {
        return watch_stream(s, ns, plural, q.get("resourceVersion").cloned());
    }
    let inner = s.inner.lock().expect("lock");
    let items: Vec<Value> = inner
        .objects
        .iter()
        .filter(|((p, n, _), _)| *p == plural && *n == ns)
        .map(|(_, v)| v.clone())
        .collect();
    axum::Json(json!({
        "apiVersion": "v1", "kind": "List",
        "metadata": { "resourceVersion": inner.rv.to_string() },
        "items": items,
    }))
    .into_response()
}

fn watch_stream(s: Arc<FakeApiServer>, ns: String, plural: String, from: Option<String>) -> Response {
    let from: u64 = from.and_then(|v| v.parse().ok()).unwrap_or(0);
    let end = s.end.lock().expect("lock").clone();
    let mut rx = s.changed.subscribe();
    let gone = {
        let mut inner = s.inner.lock().expect("lock");
        inner.watches_started += 1;
        from < inner.oldest
    };
    if gone {
        // The API server reports an expired version as an ERROR event in a 200 stream.
        let ev = json!({"type": "ERROR", "object": {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("too old resource version: {from}"), "reason": "Expired", "code": 410,
        }});
        return Body::from(format!("{ev}\n")).into_response();
    }
    struct St {
        last: u64,
        s: Arc<FakeApiServer>,
        rx: watch::Receiver<u64>,
        end: CancellationToken,
        ns: String,
        plural: String,
    }
    rx.borrow_and_update();
    let st = St {
        last: from,
        s,
        rx,
        end,
        ns,
        plural,
    };
    let stream = futures::stream::unfold(st, |mut st| async move {
        loop {
            st.rx.borrow_and_update();
            let batch: Vec<Change> = {
                let inner = st.s.inner.lock().expect("lock");
                inner
                    .log
                    .iter()
                    .filter(|c| c.rv > st.last && c.plural == st.plural && c.ns == st.ns)
                    .cloned()
                    .collect()
            };
            if let Some(c) = batch.last() {
                st.last = c.rv;
                let mut out = String::new();
                for c in &batch {
                    out.push_str(&json!({"type": c.kind, "object": c.object}).to_string());
                    out.push('\n');
                }
                return Some((Ok::<_, std::io::Error>(Bytes::from(out)), st));
            }
            tokio::select! {
                () = st.end.cancelled() => return None,
                r = st.rx.changed() => if r.is_err() { return None },
            }
        }
    });
    Body::from_stream(stream).into_response()
}

async fn get_one(
    State(s): State<Arc<FakeApiServer>>,
    Path((_group, _version, ns, plural, name)): Path<(String, String, String, String, String)>,
) -> Response {
    s.inner.lock().expect("lock").gets += 1;
    match s.get(&plural, &ns, &name) {
        Some(v) => axum::Json(v).into_response(),
        None => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{plural} \"{name}\" not found"),
        ),
    }
}

async fn patch_one(
    State(s): State<Arc<FakeApiServer>>,
    Path((_group, _version, ns, plural, name)): Path<(String, String, String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    apply_patch(&s, &ns, &plural, &name, &headers, &body, false)
}

async fn patch_status(
    State(s): State<Arc<FakeApiServer>>,
    Path((_group, _version, ns, plural, name)): Path<(String, String, String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    apply_patch(&s, &ns, &plural, &name, &headers, &body, true)
}

fn apply_patch(
    s: &FakeApiServer,
    ns: &str,
    plural: &str,
    name: &str,
    headers: &HeaderMap,
    body: &[u8],
    status_only: bool,
) -> Response {
    let ctype = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    if ctype != "application/merge-patch+json" {
        return status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!("fake apiserver only does merge patches, not {ctype:?}"),
        );
    }
    let patch: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return status(StatusCode::BAD_REQUEST, "BadRequest", format!("patch body: {e}")),
    };
    let mut inner = s.inner.lock().expect("lock");
    let key = (plural.to_owned(), ns.to_owned(), name.to_owned());
    let Some(mut object) = inner.objects.get(&key).cloned() else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{plural} \"{name}\" not found"),
        );
    };
    let conflict = |inner: &mut Inner| {
        inner.conflicts_served += 1;
        status(
            StatusCode::CONFLICT,
            "Conflict",
            format!("Operation cannot be fulfilled on {plural} \"{name}\": the object has been modified"),
        )
    };
    if inner.conflicts_to_inject > 0 {
        inner.conflicts_to_inject -= 1;
        return conflict(&mut inner);
    }
    if let Some(rv) = patch["metadata"]["resourceVersion"].as_str() {
        if rv != object["metadata"]["resourceVersion"].as_str().unwrap_or("") {
            return conflict(&mut inner);
        }
    }
    if status_only {
        if let Some(st) = patch.get("status") {
            merge(&mut object["status"], st);
        }
    } else {
        let mut p = patch.clone();
        if let Some(m) = p["metadata"].as_object_mut() {
            m.remove("resourceVersion");
        }
        if let Some(o) = p.as_object_mut() {
            o.remove("status");
        }
        merge(&mut object, &p);
    }
    inner.rv += 1;
    object["metadata"]["resourceVersion"] = json!(inner.rv.to_string());
    inner.objects.insert(key, object.clone());
    inner.patches.push((plural.to_owned(), name.to_owned(), patch));
    s.record(&mut inner, plural, ns, "MODIFIED", object.clone());
    axum::Json(object).into_response()
}
