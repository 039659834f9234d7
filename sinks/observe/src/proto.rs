//! Hubble's gRPC API, generated from proto/ (Cilium's public definitions, see proto/NOTICE).

#![allow(clippy::all, clippy::pedantic, missing_docs, rust_2018_idioms)]

pub mod flow {
    tonic::include_proto!("flow");
}

pub mod relay {
    tonic::include_proto!("relay");
}

pub mod observer {
    tonic::include_proto!("observer");
}

pub mod peer {
    tonic::include_proto!("peer");
}

/// Encoded descriptor set of the files above, served through gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/hubble_descriptor.bin"));
