#![no_std]
//! #[repr(C)] types shared by the kernel programs (probes/ebpf) and the loader (probes).
