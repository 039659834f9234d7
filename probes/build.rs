//! Builds the kernel programs (probes/ebpf) for bpfel-unknown-none with the image's
//! nightly through aya-build; the object lands in OUT_DIR/perisco-socket.

use std::path::{Path, PathBuf};

fn find_in_path(cmd: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) =
        std::env::var_os("CARGO_HOME").or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo").into()))
    {
        dirs.push(Path::new(&home).join("bin"));
    }
    dirs.into_iter().map(|d| d.join(cmd)).find(|p| p.is_file())
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let ebpf_dir = manifest.join("ebpf");
    println!("cargo:rerun-if-changed={}", ebpf_dir.join("src").display());
    println!("cargo:rerun-if-changed={}", ebpf_dir.join("Cargo.toml").display());
    println!("cargo:rerun-if-changed={}", manifest.join("common/src").display());
    println!("cargo:rerun-if-env-changed=PERISCO_EBPF_TOOLCHAIN");

    let Some(linker) = find_in_path("bpf-linker") else {
        eprintln!(
            "error: bpf-linker not found.\n\
             The eBPF programs of perisco-probes need the image's nightly toolchain with rust-src,\n\
             libLLVM matching that nightly's LLVM major, and bpf-linker built against it.\n\
             Run `scripts/setup.d/10-ebpf.sh` (as root) once, then build again."
        );
        std::process::exit(1);
    };
    println!("cargo:rerun-if-changed={}", linker.display());
    // aya-build runs `cargo build` for the kernel crate; make bpf-linker findable there.
    if let Some(dir) = linker.parent() {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
        if !dirs.iter().any(|d| d == dir) {
            dirs.push(dir.to_path_buf());
            // SAFETY: build scripts are single-threaded at this point.
            unsafe { std::env::set_var("PATH", std::env::join_paths(dirs).expect("PATH")) };
        }
    }

    let toolchain = std::env::var("PERISCO_EBPF_TOOLCHAIN").ok();
    let toolchain = match toolchain.as_deref() {
        Some(t) => aya_build::Toolchain::Custom(t),
        None => aya_build::Toolchain::Nightly,
    };
    let root = ebpf_dir.to_str().expect("utf-8 path");
    // aya-build runs `cargo build --package …` in the current directory; the kernel crate is
    // its own workspace (excluded from ours), so run it from there.
    std::env::set_current_dir(&ebpf_dir).expect("cd probes/ebpf");
    let pkg = aya_build::Package {
        name: "perisco-probes-ebpf",
        root_dir: root,
        ..Default::default()
    };
    if let Err(e) = aya_build::build_ebpf([pkg], toolchain) {
        eprintln!("error: building the eBPF programs (probes/ebpf) failed: {e:#}");
        eprintln!("If the toolchain is missing, run `scripts/setup.d/10-ebpf.sh` (as root).");
        std::process::exit(1);
    }
}
