//! The same kernel programs without the HTTP/2 frame walk, for kernels older than 5.17 (no
//! `bpf_loop`): every transfer is captured as a prefix of `max_capture_bytes`.
#![no_std]
#![no_main]

const WALK_H2: bool = false;

#[path = "programs.rs"]
mod programs;
