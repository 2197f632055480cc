//! MLSysOps application descriptors (`MLSysOpsApp`, JSON or YAML) read into the buckets they
//! configure and the intent of each, every refusal naming the field at fault.
//!
//! Upstream's schema has many fields the storage does not use (placement, sensors, scaling):
//! those are accepted unread, so a descriptor written for upstream deploys here as it is. A
//! bucket entry is ours alone, so a key we do not know there is a mistake and is refused.

use crate::error::{Error, Result};
use control_api::{BucketIntent, Redundancy};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The largest descriptor accepted, bytes; larger ones are refused before parsing.
pub const MAX_DESCRIPTOR_BYTES: usize = 1 << 20;

/// The root key of an upstream NB API body (`{"MLSysOpsApp": {...}}`).
pub const ROOT_KEY: &str = "MLSysOpsApp";

/// The keys a bucket entry may have.
const BUCKET_KEYS: [&str; 11] = [
    "bucket_id",
    "policy_update_token",
    "location_restrictions",
    "reduncancy",
    "redundancy",
    "max_latency",
    "min_download_speed",
    "server_side_encryption",
    "max_overhead",
    "max_cost_per_gib_month",
    "min_trust",
];

/// An application as its descriptor declares it, reduced to what the storage acts on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct App {
    /// `name`.
    pub name: String,
    /// Its components' `metadata.name`, in descriptor order.
    pub components: Vec<String>,
    /// Every bucket its components declare, in descriptor order.
    pub buckets: Vec<AppBucket>,
}

/// One bucket of an application and what it must achieve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppBucket {
    /// The component that declares it.
    pub component: String,
    /// `bucket_id`.
    pub bucket: String,
    /// What the bucket entry asks for.
    pub intent: BucketIntent,
    /// The declaring component's `qos_metrics`: the application-level targets the bucket serves.
    pub qos_metrics: Vec<QosMetric>,
}

/// One `qos_metrics[]` entry: the application metric `application_metric_id` must stay
/// `relation` `target` (measured ⟨relation⟩ target).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QosMetric {
    /// The metric's id (`get_p95_ms`).
    pub application_metric_id: String,
    /// The target value.
    pub target: f64,
    /// How the measured value must compare to the target (`lower_or_equal`, ...).
    pub relation: String,
}

/// Reads a descriptor: JSON when `content_type` says JSON, YAML when it says YAML, otherwise
/// JSON if the body starts with `{` and YAML if not. The body is `{"MLSysOpsApp": {...}}` or
/// the app object itself. Any problem is [`Error::Invalid`] naming the field.
// `Error` is large because of its gateway variant; a descriptor is read once per request.
#[allow(clippy::result_large_err)]
pub fn parse(body: &[u8], content_type: Option<&str>) -> Result<App> {
    if body.len() > MAX_DESCRIPTOR_BYTES {
        return Err(Error::Invalid(format!(
            "descriptor: {} bytes, more than the {MAX_DESCRIPTOR_BYTES} accepted",
            body.len()
        )));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::Invalid("descriptor: the body is empty".into()));
    }
    let value = match Format::of(body, content_type) {
        Format::Json => serde_json::from_slice::<Value>(body)
            .map_err(|e| Error::Invalid(format!("descriptor: not valid JSON: {e}")))?,
        Format::Yaml => serde_yaml_ng::from_slice::<Value>(body)
            .map_err(|e| Error::Invalid(format!("descriptor: not valid YAML: {e}")))?,
    };
    from_value(&value)
}

/// Reads a descriptor already parsed into a JSON value (see [`parse`]).
#[allow(clippy::result_large_err)]
pub fn from_value(value: &Value) -> Result<App> {
    let root = Node::root(value);
    let obj = root.object().map_err(Error::Invalid)?;
    let app = match obj.get(ROOT_KEY) {
        Some(inner) => root.field(ROOT_KEY, inner),
        None => root,
    };
    read_app(&app).map_err(Error::Invalid)
}

/// The outcome of one check: a refusal is its message, `<path>: <what is wrong>`. Plain text
/// inside the module; [`Error::Invalid`] at its surface.
type Check<T> = std::result::Result<T, String>;

/// The syntax of a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Yaml,
}

impl Format {
    /// From the media type when it names one of the two, else from the first byte.
    fn of(body: &[u8], content_type: Option<&str>) -> Self {
        let media = content_type
            .and_then(|ct| ct.split(';').next())
            .map(|m| m.trim().to_ascii_lowercase())
            .unwrap_or_default();
        if media == "application/json" || media.ends_with("+json") {
            return Format::Json;
        }
        if media.ends_with("/yaml") || media.ends_with("/x-yaml") || media.ends_with("+yaml") {
            return Format::Yaml;
        }
        // curl -d sends form-urlencoded, other tools octet-stream or text/plain: judge the body.
        match body.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => Format::Json,
            _ => Format::Yaml,
        }
    }
}

/// A value and where it is in the descriptor (`MLSysOpsApp.components[0].storage`).
#[derive(Clone)]
struct Node<'a> {
    path: String,
    value: &'a Value,
}

impl<'a> Node<'a> {
    fn root(value: &'a Value) -> Self {
        Node {
            path: String::new(),
            value,
        }
    }

    fn field(&self, key: &str, value: &'a Value) -> Node<'a> {
        let path = if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        };
        Node { path, value }
    }

    fn index(&self, i: usize, value: &'a Value) -> Node<'a> {
        Node {
            path: format!("{}[{i}]", self.path),
            value,
        }
    }

    /// The error `<path>: <message>`.
    fn invalid(&self, message: impl std::fmt::Display) -> String {
        let at = if self.path.is_empty() { "descriptor" } else { &self.path };
        format!("{at}: {message}")
    }

    /// The error for a value of the wrong kind, showing what was given.
    fn expected(&self, what: &str) -> String {
        self.invalid(format_args!("expected {what}, got {}", shown(self.value)))
    }

    fn object(&self) -> Check<&'a Map<String, Value>> {
        self.value.as_object().ok_or_else(|| self.expected("a mapping"))
    }

    /// The member `key`; `null` counts as absent (YAML's `key:` with nothing after it).
    fn get(&self, key: &str) -> Check<Option<Node<'a>>> {
        Ok(self
            .object()?
            .get(key)
            .filter(|v| !v.is_null())
            .map(|v| self.field(key, v)))
    }

    fn require(&self, key: &str) -> Check<Node<'a>> {
        self.get(key)?.ok_or_else(|| {
            let at = self.field(key, &Value::Null);
            at.invalid("required")
        })
    }

    fn items(&self) -> Check<Vec<Node<'a>>> {
        let list = self.value.as_array().ok_or_else(|| self.expected("a list"))?;
        Ok(list.iter().enumerate().map(|(i, v)| self.index(i, v)).collect())
    }

    fn string(&self) -> Check<&'a str> {
        self.value.as_str().ok_or_else(|| self.expected("a string"))
    }

    fn non_empty_string(&self) -> Check<&'a str> {
        let s = self.string()?;
        if s.trim().is_empty() {
            return Err(self.invalid("must not be empty"));
        }
        Ok(s)
    }

    fn number(&self, what: &str) -> Check<f64> {
        self.value
            .as_f64()
            .filter(|v| v.is_finite())
            .ok_or_else(|| self.expected(what))
    }

    /// A boolean; the YAML 1.1 words (`yes`, `on`, ...) too, which a YAML 1.2 reader keeps as
    /// strings but upstream's PyYAML reads as booleans.
    fn boolean(&self, what: &str) -> Check<bool> {
        match self.value {
            Value::Bool(b) => Ok(*b),
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" => Ok(true),
                "false" | "no" | "off" => Ok(false),
                _ => Err(self.expected(what)),
            },
            _ => Err(self.expected(what)),
        }
    }
}

/// A value for an error message, cut short when long.
fn shown(value: &Value) -> String {
    const MAX: usize = 60;
    let kind = match value {
        Value::Null => return "null".into(),
        Value::Array(_) => "a list ",
        Value::Object(_) => "a mapping ",
        _ => "",
    };
    let text = value.to_string();
    if text.chars().count() <= MAX {
        return format!("{kind}{text}");
    }
    let mut cut: String = text.chars().take(MAX).collect();
    cut.push('…');
    format!("{kind}{cut}")
}

fn read_app(app: &Node<'_>) -> Check<App> {
    app.object()?;
    let name_node = app.require("name")?;
    let name = name_node.non_empty_string()?;
    if let Err(why) = check_app_name(name) {
        return Err(name_node.invalid(format_args!("{name:?} {why}")));
    }
    let components_node = app.require("components")?;
    let components = components_node.items()?;
    if components.is_empty() {
        return Err(components_node.invalid("at least one component is required"));
    }
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let mut declared: BTreeMap<String, String> = BTreeMap::new();
    let clusters = read_cluster_placement(app)?;
    let mut out = App {
        name: name.to_owned(),
        components: Vec::with_capacity(components.len()),
        buckets: Vec::new(),
    };
    for component in &components {
        let (cname, qos, buckets) = read_component(component)?;
        let name_path = format!("{}.metadata.name", component.path);
        if let Some(first) = names.insert(cname.clone(), name_path.clone()) {
            return Err(format!("{name_path}: component {cname:?} is also declared at {first}"));
        }
        for (node, bucket, mut intent) in buckets {
            intent.clusters.clone_from(&clusters);
            if let Some(first) = declared.insert(bucket.clone(), node.path.clone()) {
                return Err(node.invalid(format_args!(
                    "bucket {bucket:?} is declared twice in this app: here and at {first}"
                )));
            }
            out.buckets.push(AppBucket {
                component: cname.clone(),
                bucket,
                intent,
                qos_metrics: qos.clone(),
            });
        }
        out.components.push(cname);
    }
    Ok(out)
}

/// `cluster_placement.cluster_id`: the clusters the app's buckets may go to (none: any). The
/// other keys of `cluster_placement` (`instances`, `location`, ...) place containers, not data.
fn read_cluster_placement(app: &Node<'_>) -> Check<Vec<String>> {
    let Some(placement) = app.get("cluster_placement")? else {
        return Ok(Vec::new());
    };
    placement.object()?;
    let Some(ids) = placement.get("cluster_id")? else {
        return Ok(Vec::new());
    };
    let mut out: Vec<String> = Vec::new();
    for id in ids.items()? {
        let s = id.non_empty_string()?;
        if !s.is_ascii() || s.chars().any(char::is_control) {
            return Err(id.invalid(format_args!("{s:?} is not a cluster agent id (printable ASCII)")));
        }
        if !out.iter().any(|o| o == s) {
            out.push(s.to_owned());
        }
    }
    Ok(out)
}

/// A component's name, its QoS metrics and its bucket entries (each with where it is).
type ComponentParts<'a> = (String, Vec<QosMetric>, Vec<(Node<'a>, String, BucketIntent)>);

fn read_component<'a>(component: &Node<'a>) -> Check<ComponentParts<'a>> {
    component.object()?;
    let metadata = component.require("metadata")?;
    metadata.object()?;
    let name_node = metadata.require("name")?;
    let name = name_node.non_empty_string()?;
    if name.len() > 253 {
        return Err(name_node.invalid("longer than 253 characters"));
    }
    let containers = component.require("containers")?;
    if containers.items()?.is_empty() {
        return Err(containers.invalid("at least one container is required"));
    }
    let mut qos = Vec::new();
    if let Some(list) = component.get("qos_metrics")? {
        for metric in list.items()? {
            qos.push(read_qos_metric(&metric)?);
        }
    }
    let mut buckets = Vec::new();
    if let Some(storage) = component.get("storage")? {
        storage.object()?;
        if let Some(list) = storage.get("buckets")? {
            for entry in list.items()? {
                let (bucket, intent) = read_bucket(&entry)?;
                buckets.push((entry, bucket, intent));
            }
        }
    }
    Ok((name.to_owned(), qos, buckets))
}

fn read_qos_metric(metric: &Node<'_>) -> Check<QosMetric> {
    metric.object()?;
    Ok(QosMetric {
        application_metric_id: metric.require("application_metric_id")?.non_empty_string()?.to_owned(),
        target: metric.require("target")?.number("a number")?,
        relation: metric.require("relation")?.non_empty_string()?.to_owned(),
    })
}

/// One `storage.buckets[]` entry: its bucket name and intent.
fn read_bucket(entry: &Node<'_>) -> Check<(String, BucketIntent)> {
    let obj = entry.object()?;
    if let Some(key) = obj.keys().find(|k| !BUCKET_KEYS.contains(&k.as_str())) {
        return Err(entry.field(key, &Value::Null).invalid(format_args!(
            "unknown key in a bucket entry (known: {})",
            BUCKET_KEYS.join(", ")
        )));
    }
    let id_node = entry.require("bucket_id")?;
    let bucket = id_node.string()?;
    if let Err(why) = check_bucket_name(bucket) {
        return Err(id_node.invalid(format_args!("{bucket:?} is not a valid bucket name: {why}")));
    }
    let mut intent = BucketIntent::default();
    if let Some(token) = entry.get("policy_update_token")? {
        intent.policy_update_token = Some(token.non_empty_string()?.to_owned());
    }
    if let Some(location) = entry.get("location_restrictions")? {
        let obj = location.object()?;
        if let Some(key) = obj.keys().find(|k| k.as_str() != "gdpr") {
            return Err(location
                .field(key, &Value::Null)
                .invalid("unknown key in location_restrictions (known: gdpr)"));
        }
        if let Some(gdpr) = location.get("gdpr")? {
            intent.gdpr = gdpr.boolean("true or false")?;
        }
    }
    intent.redundancy = read_redundancy(entry)?;
    if let Some(latency) = entry.get("max_latency")? {
        intent.max_latency = Some(positive_integer(&latency, "a positive integer (milliseconds)")?);
    }
    if let Some(speed) = entry.get("min_download_speed")? {
        let what = "a positive number (MiB/s)";
        intent.min_download_speed = Some(speed.number(what).and_then(|v| positive(&speed, v, what))?);
    }
    if let Some(sse) = entry.get("server_side_encryption")? {
        intent.encryption = Some(sse.boolean("\"on\" or \"off\"")?);
    }
    if let Some(overhead) = entry.get("max_overhead")? {
        let v = overhead.number("a number of at least 1 ((k+m)/k)")?;
        if v < 1.0 {
            return Err(overhead.expected("a number of at least 1 ((k+m)/k)"));
        }
        intent.max_overhead = Some(v);
    }
    if let Some(cost) = entry.get("max_cost_per_gib_month")? {
        let what = "a non-negative number (cost per GiB and month)";
        let v = cost.number(what)?;
        if v < 0.0 {
            return Err(cost.expected(what));
        }
        intent.max_cost_per_gib_month = Some(v);
    }
    if let Some(trust) = entry.get("min_trust")? {
        let what = "a number from 0 to 1";
        let v = trust.number(what)?;
        if !(0.0..=1.0).contains(&v) {
            return Err(trust.expected(what));
        }
        intent.min_trust = Some(v);
    }
    Ok((bucket.to_owned(), intent))
}

/// `reduncancy` (upstream's spelling) or `redundancy`; both may be given if they agree.
fn read_redundancy(entry: &Node<'_>) -> Check<Option<Redundancy>> {
    let read = |node: Node<'_>| -> Check<Redundancy> {
        let text = node.string().map_err(|_| node.expected("high, one or none"))?;
        text.parse().map_err(|_| node.expected("high, one or none"))
    };
    let upstream = entry.get("reduncancy")?.map(read).transpose()?;
    let ours = entry.get("redundancy")?.map(read).transpose()?;
    match (upstream, ours) {
        (Some(a), Some(b)) if a != b => Err(entry
            .field("redundancy", &Value::Null)
            .invalid(format_args!("{b} contradicts reduncancy: {a} (give one of the two)"))),
        (a, b) => Ok(a.or(b)),
    }
}

fn positive_integer(node: &Node<'_>, what: &str) -> Check<u64> {
    // YAML writes 50.0 for 50 now and then; a whole float is still a whole number.
    let v = match node.value {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 1.0 && *f < 2f64.powi(53))
                .map(|f| f as u64)
        }),
        _ => None,
    };
    v.filter(|v| *v > 0).ok_or_else(|| node.expected(what))
}

fn positive(node: &Node<'_>, v: f64, what: &str) -> Check<f64> {
    if v > 0.0 {
        Ok(v)
    } else {
        Err(node.expected(what))
    }
}

/// An app name as Kubernetes names objects (RFC 1123 subdomain): upstream makes it the name of
/// the `MLSysOpsApp` custom resource, and here it is one path segment of the API.
pub fn check_app_name(name: &str) -> std::result::Result<(), String> {
    if name.len() > 253 {
        return Err("is longer than 253 characters".into());
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    {
        return Err("may hold only lowercase letters, digits, '-' and '.'".into());
    }
    let alnum = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !alnum(name.bytes().next()) || !alnum(name.bytes().last()) {
        return Err("must start and end with a letter or digit".into());
    }
    Ok(())
}

/// An S3 bucket name: 3 to 63 characters, lowercase letters, digits, dots and hyphens,
/// starting and ending with a letter or digit.
pub fn check_bucket_name(name: &str) -> std::result::Result<(), String> {
    let len = name.len();
    if !(3..=63).contains(&len) {
        return Err(format!("{len} characters (3 to 63 allowed)"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '.' || *c == '-'))
    {
        return Err(format!(
            "{c:?} is not allowed (lowercase letters, digits, '.' and '-' only)"
        ));
    }
    let alnum = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !alnum(name.bytes().next()) || !alnum(name.bytes().last()) {
        return Err("must start and end with a letter or digit".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// The example of the control-plane notes (section 2), as written there.
    const EXAMPLE_YAML: &str = r#"
MLSysOpsApp:
  name: photo-ai
  components:
    - metadata: {name: infer, uid: c1}
      node_placement: {continuum_layer: [edge]}
      qos_metrics: [{application_metric_id: get_p95_ms, target: 50, relation: lower_or_equal}]
      storage:
        buckets:
          - {bucket_id: photos, policy_update_token: "t0ken-123", location_restrictions: {gdpr: true},
             reduncancy: one, max_latency: 50, min_download_speed: 20, server_side_encryption: "on"}
      data_criticality: high
      containers: [{image: "reg/infer:1"}]
"#;

    fn example_json() -> Value {
        json!({"MLSysOpsApp": {
            "name": "photo-ai",
            "components": [{
                "metadata": {"name": "infer", "uid": "c1"},
                "node_placement": {"continuum_layer": ["edge"]},
                "qos_metrics": [{"application_metric_id": "get_p95_ms", "target": 50, "relation": "lower_or_equal"}],
                "storage": {"buckets": [{
                    "bucket_id": "photos", "policy_update_token": "t0ken-123",
                    "location_restrictions": {"gdpr": true}, "reduncancy": "one", "max_latency": 50,
                    "min_download_speed": 20, "server_side_encryption": "on"
                }]},
                "data_criticality": "high",
                "containers": [{"image": "reg/infer:1"}]
            }]
        }})
    }

    fn expected_example() -> App {
        App {
            name: "photo-ai".into(),
            components: vec!["infer".into()],
            buckets: vec![AppBucket {
                component: "infer".into(),
                bucket: "photos".into(),
                intent: BucketIntent {
                    redundancy: Some(Redundancy::One),
                    max_latency: Some(50),
                    min_download_speed: Some(20.0),
                    gdpr: true,
                    encryption: Some(true),
                    policy_update_token: Some("t0ken-123".into()),
                    ..BucketIntent::default()
                },
                qos_metrics: vec![QosMetric {
                    application_metric_id: "get_p95_ms".into(),
                    target: 50.0,
                    relation: "lower_or_equal".into(),
                }],
            }],
        }
    }

    fn json_body(v: &Value) -> Vec<u8> {
        serde_json::to_vec(v).unwrap()
    }

    /// The message of a refused JSON descriptor.
    fn refusal(v: &Value) -> String {
        match parse(&json_body(v), Some("application/json")) {
            Err(Error::Invalid(msg)) => msg,
            other => panic!("{v} gave {other:?}"),
        }
    }

    /// The example with its (only) bucket entry replaced.
    fn with_bucket(bucket: Value) -> Value {
        let mut v = example_json();
        v["MLSysOpsApp"]["components"][0]["storage"]["buckets"] = json!([bucket]);
        v
    }

    /// The example with one key of its bucket entry set to `value`.
    fn with_bucket_key(key: &str, value: Value) -> Value {
        let mut v = example_json();
        v["MLSysOpsApp"]["components"][0]["storage"]["buckets"][0][key] = value;
        v
    }

    const BUCKET0: &str = "MLSysOpsApp.components[0].storage.buckets[0]";

    #[test]
    fn the_documented_example_parses_to_its_app() {
        assert_eq!(
            parse(EXAMPLE_YAML.as_bytes(), Some("application/yaml")).unwrap(),
            expected_example()
        );
    }

    #[test]
    fn json_and_yaml_agree_whatever_the_content_type_says() {
        let json = json_body(&example_json());
        let yaml = EXAMPLE_YAML.as_bytes();
        for (body, ct) in [
            (&json[..], Some("application/json")),
            (&json[..], Some("application/json; charset=utf-8")),
            (&json[..], None),
            (&json[..], Some("application/x-www-form-urlencoded")),
            // JSON is YAML, so a JSON body labelled YAML reads the same.
            (&json[..], Some("application/yaml")),
            (yaml, Some("application/x-yaml")),
            (yaml, Some("text/yaml")),
            (yaml, None),
            (yaml, Some("text/plain")),
        ] {
            assert_eq!(parse(body, ct).unwrap(), expected_example(), "{ct:?}");
        }
    }

    #[test]
    fn the_app_object_alone_is_accepted() {
        let bare = example_json()["MLSysOpsApp"].clone();
        assert_eq!(parse(&json_body(&bare), None).unwrap(), expected_example());
        // Paths then start at the app.
        let mut bad = bare;
        bad["components"][0]["storage"]["buckets"][0]["max_latency"] = json!("fast");
        assert_eq!(
            refusal(&bad),
            r#"components[0].storage.buckets[0].max_latency: expected a positive integer (milliseconds), got "fast""#
        );
    }

    #[test]
    fn both_spellings_of_redundancy_and_every_extra_intent_key() {
        let v = with_bucket(json!({
            "bucket_id": "logs.2025-eu", "redundancy": "HIGH", "reduncancy": "high",
            "server_side_encryption": "OFF", "max_overhead": 1.5, "max_cost_per_gib_month": 0.02,
            "min_trust": 0.8, "max_latency": 200.0, "location_restrictions": {"gdpr": "yes"}
        }));
        let app = parse(&json_body(&v), None).unwrap();
        let b = &app.buckets[0];
        assert_eq!(b.bucket, "logs.2025-eu");
        assert_eq!(
            b.intent,
            BucketIntent {
                redundancy: Some(Redundancy::High),
                max_latency: Some(200),
                encryption: Some(false),
                gdpr: true,
                max_overhead: Some(1.5),
                max_cost_per_gib_month: Some(0.02),
                min_trust: Some(0.8),
                ..BucketIntent::default()
            }
        );
        // Nulls (YAML `key:` with no value) are absent keys.
        let v = with_bucket(json!({"bucket_id": "abc", "redundancy": null, "max_latency": null}));
        assert_eq!(
            parse(&json_body(&v), None).unwrap().buckets[0].intent,
            BucketIntent::default()
        );
    }

    #[test]
    fn yaml_booleans_are_accepted_for_encryption() {
        for (text, want) in [
            ("on", true),
            ("\"on\"", true),
            ("true", true),
            ("off", false),
            ("false", false),
            ("no", false),
        ] {
            let yaml = format!(
                "name: a1\ncomponents:\n- metadata: {{name: c}}\n  containers: [x]\n  storage:\n    buckets:\n    - bucket_id: abc\n      server_side_encryption: {text}\n"
            );
            let app = parse(yaml.as_bytes(), Some("application/yaml")).unwrap();
            assert_eq!(app.buckets[0].intent.encryption, Some(want), "{text}");
        }
    }

    #[test]
    fn many_components_many_buckets_in_order() {
        let yaml = r"
name: shop
components:
  - metadata: {name: web}
    containers: [{image: w}]
  - metadata: {name: db}
    containers: [{image: d}]
    qos_metrics: [{application_metric_id: put_p95_ms, target: 20.5, relation: lower_or_equal}]
    storage:
      buckets:
        - bucket_id: orders
        - bucket_id: invoices
          redundancy: none
";
        let app = parse(yaml.as_bytes(), None).unwrap();
        assert_eq!(app.components, ["web", "db"]);
        let names: Vec<_> = app
            .buckets
            .iter()
            .map(|b| (b.component.as_str(), b.bucket.as_str()))
            .collect();
        assert_eq!(names, [("db", "orders"), ("db", "invoices")]);
        assert_eq!(app.buckets[1].intent.redundancy, Some(Redundancy::None));
        assert_eq!(app.buckets[0].qos_metrics[0].target, 20.5);
    }

    #[test]
    fn bad_values_in_a_bucket_name_their_field() {
        let cases: Vec<(&str, Value, &str)> = vec![
            ("max_latency", json!("fast"), r#"max_latency: expected a positive integer (milliseconds), got "fast""#),
            ("max_latency", json!(0), "max_latency: expected a positive integer (milliseconds), got 0"),
            ("max_latency", json!(-5), "max_latency: expected a positive integer (milliseconds), got -5"),
            ("max_latency", json!(2.5), "max_latency: expected a positive integer (milliseconds), got 2.5"),
            ("min_download_speed", json!(0), "min_download_speed: expected a positive number (MiB/s), got 0"),
            ("min_download_speed", json!("20"), r#"min_download_speed: expected a positive number (MiB/s), got "20""#),
            ("reduncancy", json!("two"), r#"reduncancy: expected high, one or none, got "two""#),
            ("redundancy", json!(2), "redundancy: expected high, one or none, got 2"),
            ("redundancy", json!("high"), "redundancy: high contradicts reduncancy: one (give one of the two)"),
            ("server_side_encryption", json!("maybe"), r#"server_side_encryption: expected "on" or "off", got "maybe""#),
            ("server_side_encryption", json!(1), r#"server_side_encryption: expected "on" or "off", got 1"#),
            ("location_restrictions", json!({"gdpr": 3}), "location_restrictions.gdpr: expected true or false, got 3"),
            ("location_restrictions", json!({"eu": true}), "location_restrictions.eu: unknown key in location_restrictions (known: gdpr)"),
            ("location_restrictions", json!([]), "location_restrictions: expected a mapping, got a list []"),
            ("policy_update_token", json!(""), "policy_update_token: must not be empty"),
            ("policy_update_token", json!(123), "policy_update_token: expected a string, got 123"),
            ("max_overhead", json!(0.5), "max_overhead: expected a number of at least 1 ((k+m)/k), got 0.5"),
            ("max_cost_per_gib_month", json!(-1), "max_cost_per_gib_month: expected a non-negative number (cost per GiB and month), got -1"),
            ("min_trust", json!(1.5), "min_trust: expected a number from 0 to 1, got 1.5"),
            ("bucket_id", json!("Photos"), r#"bucket_id: "Photos" is not a valid bucket name: 'P' is not allowed (lowercase letters, digits, '.' and '-' only)"#),
            ("bucket_id", json!("ab"), r#"bucket_id: "ab" is not a valid bucket name: 2 characters (3 to 63 allowed)"#),
            ("bucket_id", json!("-abc"), r#"bucket_id: "-abc" is not a valid bucket name: must start and end with a letter or digit"#),
            ("bucket_id", json!("a_b_c"), r#"bucket_id: "a_b_c" is not a valid bucket name: '_' is not allowed (lowercase letters, digits, '.' and '-' only)"#),
            ("bucket_id", json!(null), "bucket_id: required"),
            ("colour", json!("red"), "colour: unknown key in a bucket entry (known: bucket_id, policy_update_token, location_restrictions, reduncancy, redundancy, max_latency, min_download_speed, server_side_encryption, max_overhead, max_cost_per_gib_month, min_trust)"),
        ];
        for (key, value, want) in cases {
            let msg = refusal(&with_bucket_key(key, value));
            assert_eq!(msg, format!("{BUCKET0}.{want}"));
        }
        let long = "a".repeat(64);
        let msg = refusal(&with_bucket_key("bucket_id", json!(long)));
        assert!(msg.ends_with("64 characters (3 to 63 allowed)"), "{msg}");
    }

    #[test]
    fn bad_structure_names_its_field() {
        let app = |f: &dyn Fn(&mut Value)| {
            let mut v = example_json();
            f(&mut v["MLSysOpsApp"]);
            refusal(&v)
        };
        type Change = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|a| a["name"] = json!(null)), "MLSysOpsApp.name: required"),
            (
                Box::new(|a| a["name"] = json!("")),
                "MLSysOpsApp.name: must not be empty",
            ),
            (
                Box::new(|a| a["name"] = json!("Photo AI")),
                r#"MLSysOpsApp.name: "Photo AI" may hold only lowercase letters, digits, '-' and '.'"#,
            ),
            (
                Box::new(|a| a["name"] = json!("x".repeat(254))),
                "is longer than 253 characters",
            ),
            (
                Box::new(|a| a["name"] = json!(7)),
                "MLSysOpsApp.name: expected a string, got 7",
            ),
            (
                Box::new(|a| a.as_object_mut().unwrap().remove("components").map(drop).unwrap()),
                "MLSysOpsApp.components: required",
            ),
            (
                Box::new(|a| a["components"] = json!([])),
                "MLSysOpsApp.components: at least one component is required",
            ),
            (
                Box::new(|a| a["components"] = json!({"a": 1})),
                r#"MLSysOpsApp.components: expected a list, got a mapping {"a":1}"#,
            ),
            (
                Box::new(|a| a["components"][0] = json!("infer")),
                r#"MLSysOpsApp.components[0]: expected a mapping, got "infer""#,
            ),
            (
                Box::new(|a| a["components"][0]["metadata"] = json!(null)),
                "MLSysOpsApp.components[0].metadata: required",
            ),
            (
                Box::new(|a| a["components"][0]["metadata"] = json!({"uid": "c1"})),
                "MLSysOpsApp.components[0].metadata.name: required",
            ),
            (
                Box::new(|a| {
                    a["components"][0]
                        .as_object_mut()
                        .unwrap()
                        .remove("containers")
                        .map(drop)
                        .unwrap()
                }),
                "MLSysOpsApp.components[0].containers: required",
            ),
            (
                Box::new(|a| a["components"][0]["containers"] = json!([])),
                "MLSysOpsApp.components[0].containers: at least one container is required",
            ),
            (
                Box::new(|a| a["components"][0]["storage"] = json!([])),
                "MLSysOpsApp.components[0].storage: expected a mapping, got a list []",
            ),
            (
                Box::new(|a| a["components"][0]["storage"]["buckets"] = json!("photos")),
                r#"MLSysOpsApp.components[0].storage.buckets: expected a list, got "photos""#,
            ),
            (
                Box::new(|a| a["components"][0]["storage"]["buckets"][0] = json!("photos")),
                r#"MLSysOpsApp.components[0].storage.buckets[0]: expected a mapping, got "photos""#,
            ),
            (
                Box::new(|a| a["components"][0]["qos_metrics"][0]["target"] = json!("low")),
                r#"MLSysOpsApp.components[0].qos_metrics[0].target: expected a number, got "low""#,
            ),
            (
                Box::new(|a| a["components"][0]["qos_metrics"][0] = json!({"target": 1, "relation": "equal"})),
                "MLSysOpsApp.components[0].qos_metrics[0].application_metric_id: required",
            ),
        ];
        for (change, want) in cases {
            let msg = app(&*change);
            assert!(msg.starts_with(want) || msg.ends_with(want), "{msg}\nwanted {want}");
        }
    }

    #[test]
    fn a_bucket_or_component_declared_twice_names_both_places() {
        let mut v = example_json();
        let comp = v["MLSysOpsApp"]["components"][0].clone();
        let mut second = comp.clone();
        second["metadata"]["name"] = json!("train");
        second["storage"]["buckets"] = json!([{"bucket_id": "models"}, {"bucket_id": "photos"}]);
        v["MLSysOpsApp"]["components"] = json!([comp.clone(), second]);
        assert_eq!(
            refusal(&v),
            "MLSysOpsApp.components[1].storage.buckets[1]: bucket \"photos\" is declared twice in this app: here and at MLSysOpsApp.components[0].storage.buckets[0]"
        );
        v["MLSysOpsApp"]["components"] = json!([comp.clone(), comp]);
        assert_eq!(
            refusal(&v),
            "MLSysOpsApp.components[1].metadata.name: component \"infer\" is also declared at MLSysOpsApp.components[0].metadata.name"
        );
    }

    #[test]
    fn bodies_that_are_not_descriptors_are_refused() {
        let invalid = |body: &[u8], ct: Option<&str>| match parse(body, ct) {
            Err(Error::Invalid(msg)) => msg,
            other => panic!("{:?} gave {other:?}", String::from_utf8_lossy(body)),
        };
        assert_eq!(invalid(b"", None), "descriptor: the body is empty");
        assert_eq!(
            invalid(b"  \n", Some("application/json")),
            "descriptor: the body is empty"
        );
        assert!(invalid(b"{\"MLSysOpsApp\": ", Some("application/json")).starts_with("descriptor: not valid JSON: "));
        assert!(invalid(b"a: [b", Some("application/yaml")).starts_with("descriptor: not valid YAML: "));
        assert!(invalid(b"a: 1\n---\nb: 2\n", None).starts_with("descriptor: not valid YAML: "));
        assert_eq!(
            invalid(b"[1, 2]", None),
            "descriptor: expected a mapping, got a list [1,2]"
        );
        assert_eq!(
            invalid(b"just text", None),
            r#"descriptor: expected a mapping, got "just text""#
        );
        assert_eq!(
            invalid(b"{\"MLSysOpsApp\": 3}", None),
            "MLSysOpsApp: expected a mapping, got 3"
        );
        // Too big: refused before it is read.
        let mut big = json_body(&example_json());
        big.resize(MAX_DESCRIPTOR_BYTES + 1, b' ');
        assert_eq!(
            invalid(&big, None),
            format!(
                "descriptor: {} bytes, more than the 1048576 accepted",
                MAX_DESCRIPTOR_BYTES + 1
            )
        );
        // Aliases that would expand to gigabytes are stopped by the YAML reader.
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let prev = (b'a' + i - 1) as char;
            let cur = (b'a' + i) as char;
            bomb.push_str(&format!("{cur}: &{cur} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
        }
        assert!(
            invalid(bomb.as_bytes(), None).contains("repetition limit"),
            "alias bomb accepted"
        );
        // Nesting deeper than the readers' recursion limits.
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        invalid(deep.as_bytes(), Some("application/json"));
        invalid(deep.as_bytes(), Some("application/yaml"));
    }

    #[test]
    fn unknown_keys_outside_buckets_are_accepted() {
        let mut v = example_json();
        v["MLSysOpsApp"]["cluster_placement"] = json!({"instances": 2, "location": "eu"});
        v["MLSysOpsApp"]["permitted_actions"] = json!(["scale"]);
        v["MLSysOpsApp"]["components"][0]["sensors"] = json!([{"camera": {"model": "D455"}}]);
        v["MLSysOpsApp"]["components"][0]["storage"]["volumes"] = json!(["v1"]);
        assert_eq!(parse(&json_body(&v), None).unwrap(), expected_example());
    }

    #[test]
    fn cluster_placement_cluster_id_restricts_every_bucket_of_the_app() {
        let mut v = example_json();
        v["MLSysOpsApp"]["cluster_placement"] = json!({"cluster_id": ["edge-1", "edge-2", "edge-1"], "instances": 2});
        let app = parse(&json_body(&v), None).unwrap();
        for b in &app.buckets {
            assert_eq!(b.intent.clusters, ["edge-1", "edge-2"], "{}", b.bucket);
        }
        let cases = [
            (
                json!({"cluster_id": "edge-1"}),
                "MLSysOpsApp.cluster_placement.cluster_id: expected a list",
            ),
            (
                json!({"cluster_id": [""]}),
                "MLSysOpsApp.cluster_placement.cluster_id[0]: must not be empty",
            ),
            (
                json!({"cluster_id": ["ok", 3]}),
                "MLSysOpsApp.cluster_placement.cluster_id[1]: expected a string",
            ),
            (
                json!({"cluster_id": ["é"]}),
                "MLSysOpsApp.cluster_placement.cluster_id[0]: \"é\" is not a cluster agent id",
            ),
            (json!(["edge-1"]), "MLSysOpsApp.cluster_placement: expected a mapping"),
        ];
        for (placement, want) in cases {
            v["MLSysOpsApp"]["cluster_placement"] = placement;
            let msg = refusal(&v);
            assert!(msg.starts_with(want), "{msg} (want {want})");
        }
    }

    #[test]
    fn names_follow_their_rules() {
        for ok in ["abc", "a.b-c", "1-2-3", &"a".repeat(63)] {
            assert_eq!(check_bucket_name(ok), Ok(()), "{ok}");
        }
        for bad in ["ab", "abc-", ".abc", "ABC", "a b c", "ab\u{e9}c", &"a".repeat(64)] {
            assert!(check_bucket_name(bad).is_err(), "{bad}");
        }
        for ok in ["photo-ai", "a", "app.v2", &"a".repeat(253)] {
            assert_eq!(check_app_name(ok), Ok(()), "{ok}");
        }
        for bad in ["-a", "a-", "A", "a_b", "a/b", &"a".repeat(254)] {
            assert!(check_app_name(bad).is_err(), "{bad}");
        }
    }

    /// Arbitrary JSON values, nested a few levels, with descriptor keys among the map keys so
    /// that the walk goes deep.
    fn arb_json() -> impl Strategy<Value = Value> {
        let key = prop_oneof![
            Just("MLSysOpsApp".to_owned()),
            Just("name".to_owned()),
            Just("components".to_owned()),
            Just("metadata".to_owned()),
            Just("containers".to_owned()),
            Just("storage".to_owned()),
            Just("buckets".to_owned()),
            Just("qos_metrics".to_owned()),
            Just("location_restrictions".to_owned()),
            proptest::sample::select(BUCKET_KEYS.to_vec()).prop_map(str::to_owned),
            "[a-z_]{0,8}",
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            "[a-z0-9.-]{0,70}".prop_map(Value::String),
            ".{0,10}".prop_map(Value::String),
        ];
        leaf.prop_recursive(6, 64, 6, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(key.clone(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512), json in any::<bool>()) {
            let ct = if json { "application/json" } else { "application/yaml" };
            let _ = parse(&body, Some(ct));
            let _ = parse(&body, None);
        }

        #[test]
        fn arbitrary_json_never_panics_and_yaml_agrees(v in arb_json()) {
            let from_json = parse(&json_body(&v), Some("application/json"));
            let _ = from_value(&v);
            if let Ok(app) = &from_json {
                // Whatever parses has names and buckets that follow the rules.
                prop_assert!(check_app_name(&app.name).is_ok());
                for b in &app.buckets {
                    prop_assert!(check_bucket_name(&b.bucket).is_ok());
                }
            }
            let yaml = serde_yaml_ng::to_string(&v).unwrap();
            let from_yaml = parse(yaml.as_bytes(), Some("application/yaml"));
            prop_assert_eq!(from_json.is_ok(), from_yaml.is_ok(), "{}", yaml);
        }
    }
}
