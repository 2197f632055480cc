//! Observable instruments read when metrics are collected: the healer's and scrubber's
//! counters, the repair queue and backend health. They read state the engine keeps anyway,
//! so they cost nothing between scrapes.

use crate::engine::Engine;
use std::sync::atomic::{AtomicU64, Ordering};
use telemetry::otel::ObservableKind::{Counter, Gauge};

/// Registers every observable instrument of `engine` with its telemetry's exporter.
pub fn register(engine: &Engine) {
    let otel = engine.telemetry().otel().clone();
    if !otel.is_enabled() {
        return;
    }
    type Field = fn(&Engine) -> &AtomicU64;
    let counters: [(&'static str, &'static str, &'static str, Field); 15] = [
        (
            "mlsysops.meta.wal_syncs",
            "Syncs of the metadata WAL before acknowledging writes (--durability fsync); one covers every commit before it",
            "{sync}",
            Engine::wal_syncs,
        ),
        (
            "mlsysops.healer.shards_repaired",
            "Shards rebuilt and written back by the healer",
            "{shard}",
            |e| &e.heal_counters().shards_repaired,
        ),
        (
            "mlsysops.healer.written",
            "Shard bytes written back by the healer",
            "By",
            |e| &e.heal_counters().bytes_written,
        ),
        (
            "mlsysops.healer.failures",
            "Rebuild attempts that failed (retried later)",
            "{attempt}",
            |e| &e.heal_counters().failures,
        ),
        (
            "mlsysops.healer.dropped",
            "Repair entries dropped because their set no longer exists",
            "{entry}",
            |e| &e.heal_counters().dropped,
        ),
        (
            "mlsysops.healer.passes",
            "Completed healer passes over the repair queue",
            "{pass}",
            |e| &e.heal_counters().passes,
        ),
        (
            "mlsysops.scrubber.passes",
            "Completed scrubber passes over every shard",
            "{pass}",
            |e| &e.scrub_counters().passes,
        ),
        (
            "mlsysops.scrubber.shards_checked",
            "Shards read and verified by the scrubber",
            "{shard}",
            |e| &e.scrub_counters().shards_checked,
        ),
        (
            "mlsysops.scrubber.blocks_checked",
            "Shard blocks verified by the scrubber",
            "{block}",
            |e| &e.scrub_counters().blocks_checked,
        ),
        (
            "mlsysops.scrubber.corrupt_blocks",
            "Shard blocks whose checksum did not match",
            "{block}",
            |e| &e.scrub_counters().corrupt_blocks,
        ),
        (
            "mlsysops.scrubber.missing_shards",
            "Shards the scrubber found missing or short",
            "{shard}",
            |e| &e.scrub_counters().missing_shards,
        ),
        (
            "mlsysops.integrity.forged_shard_blocks",
            "Shard blocks with a valid checksum found rewritten (keyed MAC or authenticated decoding failed)",
            "{block}",
            |e| &e.integrity_counters().forged_shard_blocks,
        ),
        (
            "mlsysops.integrity.reauthenticated_blocks",
            "Encrypted blocks that failed authentication and were decoded from other shards",
            "{block}",
            |e| &e.integrity_counters().reauthenticated_blocks,
        ),
        (
            "mlsysops.integrity.unauthenticated_blocks",
            "Encrypted blocks that failed authentication however they were decoded (failed reads)",
            "{block}",
            |e| &e.integrity_counters().unauthenticated_blocks,
        ),
        (
            "mlsysops.scrubber.read",
            "Shard bytes read by the scrubber",
            "By",
            |e| &e.scrub_counters().bytes_read,
        ),
    ];
    for (name, description, unit, field) in counters {
        let e = engine.clone();
        otel.observe_u64(name, description, unit, Counter, move |observe| {
            observe(field(&e).load(Ordering::Relaxed), &[]);
        });
    }
    let e = engine.clone();
    otel.observe_u64(
        "mlsysops.repair_queue.length",
        "Shards queued for repair",
        "{shard}",
        Gauge,
        move |observe| {
            // A scan of the repair table: small in a healthy system, and read only per scrape.
            if let Ok(n) = e.repair_queue_len() {
                observe(n as u64, &[]);
            }
        },
    );
    let e = engine.clone();
    otel.observe_u64(
        telemetry::otel::names::BACKEND_ACTIVE_REQUESTS,
        "Requests to a storage backend in flight",
        "{request}",
        Gauge,
        move |observe| {
            for b in e.backends() {
                for (op, n) in b.in_flight() {
                    observe(
                        n,
                        &[("mlsysops.backend", b.id()), ("mlsysops.backend.operation", op.name())],
                    );
                }
            }
        },
    );
    let e = engine.clone();
    otel.observe_u64(
        "mlsysops.migration.objects",
        "Objects the migrator handled, by bucket and outcome (reencoded, moved, relabelled, failed, skipped)",
        "{object}",
        Counter,
        move |observe| {
            for (bucket, c, _, _) in e.migrations().counters() {
                for (outcome, n) in [
                    ("reencoded", c.reencoded),
                    ("moved", c.moved),
                    ("relabelled", c.relabelled),
                    ("failed", c.failed),
                    ("skipped", c.skipped),
                ] {
                    observe(
                        n,
                        &[("aws.s3.bucket", &bucket), ("mlsysops.migration.outcome", outcome)],
                    );
                }
            }
        },
    );
    let e = engine.clone();
    otel.observe_u64(
        "mlsysops.migration.migrated",
        "Bytes the migrator re-encoded or moved",
        "By",
        Counter,
        move |observe| {
            for (bucket, c, _, _) in e.migrations().counters() {
                observe(c.bytes, &[("aws.s3.bucket", &bucket)]);
            }
        },
    );
    let e = engine.clone();
    otel.observe_u64(
        "mlsysops.migration.remaining_objects",
        "Objects still on an older policy epoch than their bucket's",
        "{object}",
        Gauge,
        move |observe| {
            for (bucket, _, objects, _) in e.migrations().counters() {
                observe(objects, &[("aws.s3.bucket", &bucket)]);
            }
        },
    );
    let e = engine.clone();
    otel.observe_u64(
        "mlsysops.migration.remaining",
        "Bytes of objects still on an older policy epoch than their bucket's",
        "By",
        Gauge,
        move |observe| {
            for (bucket, _, _, bytes) in e.migrations().counters() {
                observe(bytes, &[("aws.s3.bucket", &bucket)]);
            }
        },
    );
    let e = engine.clone();
    otel.observe_u64(
        "mlsysops.backend.healthy",
        "1 while a backend is healthy, 0 while it is suspect and routed around",
        "{state}",
        Gauge,
        move |observe| {
            for b in e.backends() {
                observe(u64::from(b.health().is_healthy()), &[("mlsysops.backend", b.id())]);
            }
        },
    );
}
