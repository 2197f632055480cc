//! The checked-in AgentLink code, src/link/agentlink.v1.rs, is what proto/agentlink.proto
//! generates. After changing the proto: `UPDATE_PROTO=1 cargo test -p agents --test proto`.

use std::path::{Path, PathBuf};

#[test]
fn generated_code_matches_the_proto() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = tempfile::tempdir().unwrap();
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path().unwrap());
    let protos: [PathBuf; 1] = [crate_dir.join("proto/agentlink.proto")];
    let includes: [PathBuf; 1] = [crate_dir.join("proto")];
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .emit_rerun_if_changed(false)
        .out_dir(out.path())
        .compile_with_config(config, &protos, &includes)
        .expect("generate the AgentLink code");
    let fresh = std::fs::read_to_string(out.path().join("agentlink.v1.rs")).unwrap();
    let checked_in = crate_dir.join("src/link/agentlink.v1.rs");
    if std::env::var_os("UPDATE_PROTO").is_some() {
        std::fs::write(&checked_in, &fresh).unwrap();
        return;
    }
    let current = std::fs::read_to_string(&checked_in).unwrap();
    assert!(
        current == fresh,
        "{} is stale: run `UPDATE_PROTO=1 cargo test -p agents --test proto`",
        checked_in.display()
    );
}
