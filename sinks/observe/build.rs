//! Compiles Hubble's .proto files (proto/) with protox (no protoc needed) and generates
//! the tonic server code, plus the descriptor set served through gRPC reflection.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/observer/observer.proto", "proto/peer/peer.proto"];
    for dir in ["proto/flow", "proto/observer", "proto/relay", "proto/peer"] {
        println!("cargo:rerun-if-changed={dir}");
    }
    let fds = protox::compile(files, ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("hubble_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
