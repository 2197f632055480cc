//! Generates the AgentLink gRPC code from proto/agentlink.proto.
//!
//! protoc comes from the `protoc-bin-vendored` crate, so no system protoc is needed; it ships
//! prebuilt binaries and compiles nothing, where `protox` would build a protobuf parser
//! (prost-reflect, logos, miette) to read one small file.
//!
//! A cost either way: prost-build turns on regex's `unicode-bool` among the build-time
//! crates, which bindgen shares, so librocksdb-sys (RocksDB's C++) builds once more in a target
//! dir, and again for any build whose packages do not include this crate.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_with_config(config, &["proto/agentlink.proto"], &["proto"])?;
    Ok(())
}
