//! The `ebpf_socket` source: live capture of plaintext TCP payloads with aya.
//!
//! The kernel programs (probes/ebpf, built by build.rs) copy what processes read from and
//! write to TCP sockets into a ring buffer, filtered in the kernel (CIDRs, ports, roles,
//! our own pid) before any copy; this crate loads them with offsets from the kernel's BTF,
//! turns the records into `SocketData` events and feeds the pipeline.

pub mod btf;
pub mod config;
pub mod events;
pub mod loader;
pub mod procinfo;
pub mod source;

pub use config::{Cidr, EbpfSocketConfig, Hook, RoleName};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kernel BTF: {0}")]
    Btf(String),
    #[error("{0}")]
    Load(String),
}
