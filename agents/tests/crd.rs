//! The CRD shipped in deploy/ describes the resource the controller reads and writes: the
//! same group, names, scope, version and status subresource, and the same fields with the same
//! types as the Rust type generates (`kube::CustomResourceExt::crd`). A field added on one side
//! only fails here, before an API server refuses a status patch in a real cluster.

use agents::k8s::controller::MLSysOpsApp;
use kube::CustomResourceExt;
use serde_json::Value;
use std::collections::BTreeSet;

fn shipped() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/kubernetes/10-crd-mlsysopsapp.yaml"
    );
    let text = std::fs::read_to_string(path).expect("the shipped CRD");
    serde_yaml_ng::from_str(&text).expect("the shipped CRD is YAML")
}

/// Every field under `schema` as `path: type`.
fn fields(schema: &Value, path: &str, out: &mut BTreeSet<String>) {
    let ty = schema["type"].as_str().unwrap_or("any");
    out.insert(format!("{path}: {ty}"));
    if let Some(props) = schema["properties"].as_object() {
        for (name, sub) in props {
            fields(sub, &format!("{path}.{name}"), out);
        }
    }
    if schema["items"].is_object() {
        fields(&schema["items"], &format!("{path}[]"), out);
    }
}

fn tree(crd: &Value) -> BTreeSet<String> {
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"];
    let mut out = BTreeSet::new();
    fields(&schema["spec"], "spec", &mut out);
    fields(&schema["status"], "status", &mut out);
    out
}

#[test]
fn the_shipped_crd_matches_the_type_the_controller_uses() {
    let ours = serde_json::to_value(MLSysOpsApp::crd()).unwrap();
    let shipped = shipped();
    for key in ["group", "scope", "names"] {
        let (a, b) = (&ours["spec"][key], &shipped["spec"][key]);
        if key == "names" {
            for n in ["kind", "plural", "singular"] {
                assert_eq!(a[n], b[n], "spec.names.{n}");
            }
        } else {
            assert_eq!(a, b, "spec.{key}");
        }
    }
    assert_eq!(ours["metadata"]["name"], shipped["metadata"]["name"]);
    let (v1, v2) = (&ours["spec"]["versions"][0], &shipped["spec"]["versions"][0]);
    assert_eq!(v1["name"], v2["name"]);
    assert_eq!(
        v1["subresources"]["status"], v2["subresources"]["status"],
        "status subresource"
    );
    let (a, b) = (tree(&ours), tree(&shipped));
    let only_rust: Vec<&String> = a.difference(&b).collect();
    let only_yaml: Vec<&String> = b.difference(&a).collect();
    assert!(
        only_rust.is_empty() && only_yaml.is_empty(),
        "fields differ:\n  only in the Rust type: {only_rust:#?}\n  only in the shipped CRD: {only_yaml:#?}"
    );
}
