//! The workers.

use crate::report::OpStats;
use crate::{BenchConfig, BenchError, Report, Workload};
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use bytes::Bytes;
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

type Stats = BTreeMap<&'static str, OpStats>;

fn client(cfg: &BenchConfig) -> Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(&cfg.endpoint)
        .region(Region::new(cfg.region.clone()))
        .credentials_provider(Credentials::new(
            &cfg.access_key,
            &cfg.secret_key,
            None,
            None,
            "mlsysops-bench",
        ))
        .force_path_style(true)
        // A failed request counts as an error instead of being hidden by retries.
        .retry_config(RetryConfig::disabled())
        .build();
    Client::from_conf(conf)
}

fn describe<E>(e: &aws_sdk_s3::error::SdkError<E>) -> String
where
    E: std::fmt::Debug + aws_sdk_s3::error::ProvideErrorMetadata,
{
    match e.as_service_error() {
        Some(s) => format!("{}: {}", s.code().unwrap_or("?"), s.message().unwrap_or("")),
        None => format!("{e:?}").chars().take(300).collect(),
    }
}

fn object_key(cfg: &BenchConfig, i: usize) -> String {
    format!("{}obj-{i:08}", cfg.prefix)
}

/// Runs the benchmark described by `cfg` and measures it.
pub async fn run(cfg: &BenchConfig) -> Result<Report, BenchError> {
    cfg.validate()?;
    let client = client(cfg);
    if client.head_bucket().bucket(&cfg.bucket).send().await.is_err() {
        client
            .create_bucket()
            .bucket(&cfg.bucket)
            .send()
            .await
            .map_err(|e| BenchError::Setup(format!("creating bucket {}: {}", cfg.bucket, describe(&e))))?;
    }
    let mut payload =
        vec![0u8; usize::try_from(cfg.object_size).map_err(|_| BenchError::Config("object size too large".into()))?];
    StdRng::from_entropy().fill_bytes(&mut payload);
    let payload = Bytes::from(payload);
    if matches!(cfg.workload, Workload::Get | Workload::Mixed | Workload::List) {
        prepare(&client, cfg, &payload).await?;
    }

    let issued = Arc::new(AtomicU64::new(0));
    let bar = cfg.progress.then(|| progress_bar(cfg));
    let started = Instant::now();
    let deadline = (!cfg.duration.is_zero()).then(|| started + cfg.duration);
    let workers = (0..cfg.concurrency).map(|w| {
        let (client, cfg, payload, issued, bar) = (
            client.clone(),
            cfg.clone(),
            payload.clone(),
            issued.clone(),
            bar.clone(),
        );
        tokio::spawn(async move {
            let mut stats = Stats::new();
            let mut rng = StdRng::from_entropy();
            loop {
                let n = issued.fetch_add(1, Ordering::Relaxed);
                if cfg.max_ops.is_some_and(|m| n >= m) || deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                one_op(&client, &cfg, &payload, &mut rng, &mut stats, w, n).await;
                if let Some(b) = &bar {
                    match (cfg.max_ops, deadline) {
                        (Some(_), _) => b.inc(1),
                        (None, Some(_)) => b.set_position(started.elapsed().as_secs()),
                        (None, None) => {}
                    }
                }
            }
            stats
        })
    });
    let mut merged = Stats::new();
    for res in futures::future::join_all(workers).await {
        let stats = res.map_err(|e| BenchError::Setup(format!("a worker panicked: {e}")))?;
        for (k, s) in stats {
            match merged.get_mut(k) {
                Some(m) => m.merge(s),
                None => {
                    merged.insert(k, s);
                }
            }
        }
    }
    let elapsed = started.elapsed();
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let config = serde_json::to_value(cfg).unwrap_or_default();
    Ok(Report::build(elapsed, merged, config))
}

fn progress_bar(cfg: &BenchConfig) -> indicatif::ProgressBar {
    let (len, unit) = match cfg.max_ops {
        Some(m) => (m, "ops"),
        None => (cfg.duration.as_secs().max(1), "s"),
    };
    let bar = indicatif::ProgressBar::with_draw_target(Some(len), indicatif::ProgressDrawTarget::stderr());
    let style = indicatif::ProgressStyle::with_template(&format!("{{bar:40}} {{pos}}/{{len}} {unit} {{elapsed}}"))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

/// PUTs the objects that get, mixed and list read, `concurrency` at a time.
async fn prepare(client: &Client, cfg: &BenchConfig, payload: &Bytes) -> Result<(), BenchError> {
    let puts = futures::stream::iter(0..cfg.objects)
        .map(|i| {
            let key = object_key(cfg, i);
            async move {
                client
                    .put_object()
                    .bucket(&cfg.bucket)
                    .key(&key)
                    .body(ByteStream::from(payload.clone()))
                    .send()
                    .await
                    .map_err(|e| BenchError::Setup(format!("PUT {key}: {}", describe(&e))))
            }
        })
        .buffer_unordered(cfg.concurrency);
    let results: Vec<_> = puts.collect().await;
    results.into_iter().try_for_each(|r| r.map(|_| ()))
}

async fn one_op(
    client: &Client,
    cfg: &BenchConfig,
    payload: &Bytes,
    rng: &mut StdRng,
    stats: &mut Stats,
    worker: usize,
    n: u64,
) {
    let read = match cfg.workload {
        Workload::Get => true,
        Workload::Mixed => rng.gen_bool(cfg.read_ratio),
        _ => false,
    };
    match cfg.workload {
        Workload::Put => put(client, cfg, payload, &format!("{}put-{worker}-{n}", cfg.prefix), stats).await,
        Workload::Get | Workload::Mixed => {
            let key = object_key(cfg, rng.gen_range(0..cfg.objects));
            if read {
                get(client, cfg, &key, stats).await;
            } else {
                put(client, cfg, payload, &key, stats).await;
            }
        }
        Workload::List => list(client, cfg, stats).await,
        Workload::Multipart => multipart(client, cfg, payload, &format!("{}mpu-{worker}-{n}", cfg.prefix), stats).await,
    }
}

async fn put(client: &Client, cfg: &BenchConfig, payload: &Bytes, key: &str, stats: &mut Stats) {
    let t = Instant::now();
    let res = client
        .put_object()
        .bucket(&cfg.bucket)
        .key(key)
        .body(ByteStream::from(payload.clone()))
        .send()
        .await;
    let s = stats.entry("put").or_insert_with(OpStats::new);
    match res {
        Ok(_) => s.record(t.elapsed(), payload.len() as u64),
        Err(e) => s.error(format!("PUT {key}: {}", describe(&e))),
    }
}

async fn get(client: &Client, cfg: &BenchConfig, key: &str, stats: &mut Stats) {
    let t = Instant::now();
    let res = match client.get_object().bucket(&cfg.bucket).key(key).send().await {
        Ok(out) => out
            .body
            .collect()
            .await
            .map(|b| b.into_bytes().len() as u64)
            .map_err(|e| format!("GET {key}: reading body: {e}")),
        Err(e) => Err(format!("GET {key}: {}", describe(&e))),
    };
    let s = stats.entry("get").or_insert_with(OpStats::new);
    match res {
        Ok(len) if len == cfg.object_size => s.record(t.elapsed(), len),
        Ok(len) => s.error(format!("GET {key}: {len} bytes, expected {}", cfg.object_size)),
        Err(e) => s.error(e),
    }
}

/// One ListObjectsV2 page per measurement, walking all pages of the prepared objects.
async fn list(client: &Client, cfg: &BenchConfig, stats: &mut Stats) {
    let mut token: Option<String> = None;
    loop {
        let t = Instant::now();
        let res = client
            .list_objects_v2()
            .bucket(&cfg.bucket)
            .prefix(format!("{}obj-", cfg.prefix))
            .set_continuation_token(token.take())
            .send()
            .await;
        let s = stats.entry("list").or_insert_with(OpStats::new);
        match res {
            Ok(out) => {
                s.record(t.elapsed(), 0);
                match out.next_continuation_token() {
                    Some(next) if out.is_truncated() == Some(true) => token = Some(next.to_owned()),
                    _ => return,
                }
            }
            Err(e) => {
                s.error(format!("LIST: {}", describe(&e)));
                return;
            }
        }
    }
}

async fn multipart(client: &Client, cfg: &BenchConfig, payload: &Bytes, key: &str, stats: &mut Stats) {
    let t = Instant::now();
    let res: Result<(), String> = async {
        let id = client
            .create_multipart_upload()
            .bucket(&cfg.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| format!("CreateMultipartUpload {key}: {}", describe(&e)))?
            .upload_id()
            .ok_or_else(|| format!("CreateMultipartUpload {key}: no upload id"))?
            .to_owned();
        let part = usize::try_from(cfg.part_size).unwrap_or(usize::MAX).max(1);
        let mut parts = Vec::new();
        for (i, chunk) in payload.chunks(part).enumerate() {
            let n = i32::try_from(i + 1).map_err(|_| "too many parts".to_owned())?;
            let out = client
                .upload_part()
                .bucket(&cfg.bucket)
                .key(key)
                .upload_id(&id)
                .part_number(n)
                .body(ByteStream::from(payload.slice_ref(chunk)))
                .send()
                .await
                .map_err(|e| format!("UploadPart {key} #{n}: {}", describe(&e)))?;
            parts.push(
                CompletedPart::builder()
                    .part_number(n)
                    .set_e_tag(out.e_tag().map(str::to_owned))
                    .build(),
            );
        }
        client
            .complete_multipart_upload()
            .bucket(&cfg.bucket)
            .key(key)
            .upload_id(&id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
            .await
            .map_err(|e| format!("CompleteMultipartUpload {key}: {}", describe(&e)))?;
        Ok(())
    }
    .await;
    let s = stats.entry("multipart").or_insert_with(OpStats::new);
    match res {
        Ok(()) => s.record(t.elapsed(), payload.len() as u64),
        Err(e) => s.error(e),
    }
}
