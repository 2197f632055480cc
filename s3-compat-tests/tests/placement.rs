//! Bucket placement by backend labels or ids: `CreateBucket` with a LocationConstraint of
//! `PRESET@SELECTOR` keeps a bucket's shards on the selected backends only.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
use s3_compat_tests::*;

/// Eight local backends: l0..l4 in region eu (GDPR), l5..l7 in region us.
fn config(root: &Path) -> String {
    let mut toml = String::new();
    for i in 0..8 {
        let (region, gdpr) = if i < 5 { ("eu", true) } else { ("us", false) };
        toml.push_str(&format!(
            "[[backend]]\nid = \"l{i}\"\nkind = \"local\"\npath = {:?}\nlabels = {{ provider = \"local\", region = \"{region}\", gdpr = {gdpr} }}\n\n",
            root.join(format!("l{i}"))
        ));
    }
    toml
}

/// Shard files per backend id.
fn shards_per_backend(root: &Path) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for i in 0..8 {
        let dir = root.join(format!("l{i}")).join("shards");
        let n = fs::read_dir(&dir)
            .map(|sets| {
                sets.map(|s| fs::read_dir(s.expect("entry").path()).expect("set dir").count())
                    .sum()
            })
            .unwrap_or(0);
        out.insert(format!("l{i}"), n);
    }
    out
}

async fn create_with(c: &aws_sdk_s3::Client, bucket: &str, constraint: &str) -> Result<(), ErrInfo> {
    c.create_bucket()
        .bucket(bucket)
        .create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(constraint))
                .build(),
        )
        .send()
        .await
        .map(|_| ())
        .map_err(|e| err_info(&e))
}

#[tokio::test]
async fn buckets_keep_their_shards_on_the_selected_backends() {
    let backends = tempfile::tempdir().expect("temp dir");
    let srv = TestServer::start(
        ServerOptions::new()
            .default_policy("ec-3-1")
            .config_toml(config(backends.path())),
    );
    let c = srv.client();

    create_with(&c, "eu-only", "ec-2-1@region=eu")
        .await
        .expect("ec-2-1@region=eu");
    for i in 0..40 {
        put_bytes(&c, "eu-only", &format!("k{i}"), &random_bytes(1000 + i)).await;
    }
    srv.settled().await;
    let counts = shards_per_backend(backends.path());
    for (id, n) in &counts {
        let eu = id.as_str() < "l5";
        if eu {
            // 40 objects x 3 shards over 5 backends: 24 each on average; rendezvous spreads them.
            assert!(*n >= 10, "eu backend {id} holds only {n} shards: {counts:?}");
        } else {
            assert_eq!(*n, 0, "us backend {id} holds shards of an eu-only bucket: {counts:?}");
        }
    }
    assert_eq!(counts.values().sum::<usize>(), 120, "{counts:?}");

    create_with(&c, "by-id", "ec-2-1@l5,l6,l7")
        .await
        .expect("ec-2-1@l5,l6,l7");
    let before = shards_per_backend(backends.path());
    put_bytes(&c, "by-id", "k", &random_bytes(3 * MIB)).await;
    srv.settled().await;
    let after = shards_per_backend(backends.path());
    for id in ["l5", "l6", "l7"] {
        assert_eq!(
            after[id],
            before[id] + 1,
            "{id} should hold one shard of by-id/k: {after:?}"
        );
    }
    assert_eq!(after.values().sum::<usize>(), before.values().sum::<usize>() + 3);

    // The default policy (ec-3-1) on the GDPR backends only.
    create_with(&c, "gdpr", "@gdpr=true").await.expect("@gdpr=true");
    let data = random_bytes(2 * MIB + 3);
    put_bytes(&c, "gdpr", "k", &data).await;
    assert_same_bytes(&get_bytes(&c, "gdpr", "k").await, &data, "gdpr/k");

    for (bucket, constraint, why) in [
        ("too-few", "ec-4-2@region=us", "needs 6"),
        ("bad-label", "ec-2-1@colour=red", "unknown label"),
        ("no-match", "ec-2-1@region=mars", "none"),
        ("empty-term", "ec-2-1@l1,,l2", "empty term"),
    ] {
        let err = create_with(&c, bucket, constraint).await.expect_err(constraint);
        assert_eq!(
            err.code.as_deref(),
            Some("InvalidLocationConstraint"),
            "{constraint}: {err:?}"
        );
        assert_eq!(err.status, Some(400), "{constraint}: {err:?}");
        assert!(
            err.message.as_deref().is_some_and(|m| m.contains(why)),
            "{constraint}: message should say {why:?}: {err:?}"
        );
    }
    // Placement survives a restart: it is part of the bucket record.
    let mut srv = srv;
    srv.restart();
    let c = srv.client();
    let before = shards_per_backend(backends.path());
    put_bytes(&c, "eu-only", "after-restart", &random_bytes(100)).await;
    let after = shards_per_backend(backends.path());
    for id in ["l5", "l6", "l7"] {
        assert_eq!(
            after[id], before[id],
            "{id} got a shard of eu-only after restart: {after:?}"
        );
    }
}
