//! The kernel programs with the HTTP/2 frame walk, which runs in `bpf_loop` (Linux 5.17+).
#![no_std]
#![no_main]

/// Walk HTTP/2 connections frame by frame (see `capture` in programs.rs).
const WALK_H2: bool = true;

#[path = "programs.rs"]
mod programs;
