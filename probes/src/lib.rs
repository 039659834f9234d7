//! ebpf_socket source: aya loader for the kernel programs in probes/ebpf
