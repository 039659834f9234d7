//! perisco's global allocator: mimalloc, called the way C calls it.
//!
//! The `mimalloc` crate sends every Rust allocation through `mi_malloc_aligned`, whose
//! padding check pushes sizes just below a size-class boundary (a 192-byte message, for
//! one) onto a slow path on every call. Rust layouts never need more than mimalloc's
//! natural alignment in practice: `mi_malloc` returns blocks aligned to 16 bytes (8 for
//! blocks under 16 bytes, which never need more since a size is a multiple of its
//! alignment). Only larger alignments take the aligned entry points.
#![no_std]

use core::alloc::{GlobalAlloc, Layout};
use core::ffi::c_void;

use libmimalloc_sys as mi;

unsafe extern "C" {
    fn mi_option_get(option: core::ffi::c_int) -> core::ffi::c_long;
    fn mi_option_set(option: core::ffi::c_int, value: core::ffi::c_long);
    fn mi_collect(force: bool);
}

#[cfg(target_os = "linux")]
unsafe extern "C" {
    fn prctl(option: core::ffi::c_int, ...) -> core::ffi::c_int;
}

#[cfg(target_os = "linux")]
const PR_SET_THP_DISABLE: core::ffi::c_int = 41;
#[cfg(all(target_os = "linux", test))]
const PR_GET_THP_DISABLE: core::ffi::c_int = 42;

/// `prctl(option, arg, 0, 0, 0)`, the form of the THP options (the unused arguments must
/// be 0).
#[cfg(target_os = "linux")]
fn prctl_thp(option: core::ffi::c_int, arg: core::ffi::c_ulong) -> core::ffi::c_int {
    // SAFETY: PR_SET/GET_THP_DISABLE take one integer argument and only set or read a flag
    // on this process.
    unsafe {
        prctl(
            option,
            arg,
            0 as core::ffi::c_ulong,
            0 as core::ffi::c_ulong,
            0 as core::ffi::c_ulong,
        )
    }
}

/// `mi_option_purge_delay` in mimalloc v3's `enum mi_option_e` (include/mimalloc.h); the
/// sys crate exports no constant for it.
const MI_OPTION_PURGE_DELAY: core::ffi::c_int = 15;

/// How long freed memory stays mapped before mimalloc returns it to the kernel, in ms.
pub fn purge_delay_ms() -> core::ffi::c_long {
    // SAFETY: reading an option is always allowed.
    unsafe { mi_option_get(MI_OPTION_PURGE_DELAY) }
}

/// Set the delay of [`purge_delay_ms`]. Call it at start, before threads are spawned (the
/// option is a plain global in mimalloc).
pub fn set_purge_delay_ms(ms: core::ffi::c_long) {
    // SAFETY: setting an option is allowed at any time; the value is a plain integer.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, ms) }
}

/// Return the memory freed so far to the kernel now, rather than after the purge delay
/// and the allocator's next busy moment on the freeing thread (which an idle process may
/// never have). For after a large one-off allocation, such as parsing the kernel's BTF.
pub fn release_free_memory() {
    // SAFETY: a collection may run at any time from any thread.
    unsafe { mi_collect(true) }
}

/// `mi_option_allow_thp` in mimalloc v3's `enum mi_option_e`.
const MI_OPTION_ALLOW_THP: core::ffi::c_int = 43;

/// Does mimalloc ask for transparent huge pages for its arenas (`madvise(MADV_HUGEPAGE)`)?
pub fn huge_pages_allowed() -> bool {
    // SAFETY: reading an option is always allowed.
    unsafe { mi_option_get(MI_OPTION_ALLOW_THP) != 0 }
}

/// No transparent huge pages for this process: mimalloc stops asking for them, and the
/// kernel stops giving them (`PR_SET_THP_DISABLE`, which also covers the arena mimalloc
/// reserved before `main`). With them, khugepaged fills every 2 MiB region the heap has
/// touched at all, so a sparse heap's resident memory creeps up while the process idles,
/// and each fresh region is a 2 MiB page to zero.
pub fn disable_huge_pages() {
    // SAFETY: setting an option is allowed at any time; the value is a plain integer.
    unsafe { mi_option_set(MI_OPTION_ALLOW_THP, 0) };
    // Failure (very old kernels) leaves THP as it was.
    #[cfg(target_os = "linux")]
    prctl_thp(PR_SET_THP_DISABLE, 1);
}

/// What `mi_malloc` guarantees on 64-bit targets (`MI_MAX_ALIGN_SIZE`).
const NATURAL_ALIGN: usize = 16;

pub struct Mimalloc;

#[inline(always)]
fn natural(layout: &Layout) -> bool {
    layout.align() <= NATURAL_ALIGN && layout.align() <= layout.size()
}

// SAFETY: every path returns mimalloc memory of at least `layout.size()` bytes aligned to
// `layout.align()` (see the module comment for the natural path), and frees with mi_free,
// which accepts pointers from every mimalloc allocation function.
unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe {
            if natural(&layout) {
                mi::mi_malloc(layout.size()) as *mut u8
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()) as *mut u8
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        unsafe {
            if natural(&layout) {
                mi::mi_zalloc(layout.size()) as *mut u8
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()) as *mut u8
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        unsafe { mi::mi_free(ptr as *mut c_void) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        unsafe {
            if layout.align() <= NATURAL_ALIGN && layout.align() <= new_size {
                mi::mi_realloc(ptr as *mut c_void, new_size) as *mut u8
            } else {
                mi::mi_realloc_aligned(ptr as *mut c_void, new_size, layout.align()) as *mut u8
            }
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;

    /// The option index is mimalloc v3's purge delay: its documented default (1 000 ms), then
    /// what was set.
    #[test]
    fn purge_delay_is_the_option_set() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(purge_delay_ms(), 1000, "not mimalloc v3's purge_delay default");
        }
        set_purge_delay_ms(10_000);
        assert_eq!(purge_delay_ms(), 10_000);
    }

    /// The option index is mimalloc v3's allow_thp (default on), and the process flag is set.
    #[test]
    fn huge_pages_can_be_disabled() {
        if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
            assert!(huge_pages_allowed(), "not mimalloc v3's allow_thp default");
        }
        disable_huge_pages();
        assert!(!huge_pages_allowed());
        #[cfg(target_os = "linux")]
        assert_eq!(prctl_thp(PR_GET_THP_DISABLE, 0), 1, "PR_SET_THP_DISABLE did not take");
    }

    /// Every size/alignment pair Rust can ask for up to 4 KiB, plus large alignments:
    /// the block is aligned, writable to its end, survives a realloc, and is freed.
    #[test]
    fn blocks_are_aligned_writable_and_reallocatable() {
        let a = Mimalloc;
        let mut live = Vec::new();
        for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
            for size in (align..=4096).step_by(align).take(300) {
                let layout = Layout::from_size_align(size, align).unwrap();
                for zeroed in [false, true] {
                    let p = unsafe {
                        if zeroed {
                            a.alloc_zeroed(layout)
                        } else {
                            a.alloc(layout)
                        }
                    };
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "size {size} align {align}");
                    if zeroed {
                        assert!(unsafe { core::slice::from_raw_parts(p, size) }.iter().all(|&b| b == 0));
                    }
                    unsafe { p.write_bytes(0xa5, size) };
                    let q = unsafe { a.realloc(p, layout, size * 2 + 8) };
                    assert_eq!(q as usize % align, 0, "realloc size {size} align {align}");
                    assert!(
                        unsafe { core::slice::from_raw_parts(q, size) }
                            .iter()
                            .all(|&b| b == 0xa5)
                    );
                    live.push((q, Layout::from_size_align(size * 2 + 8, align).unwrap()));
                }
            }
        }
        for (p, layout) in live {
            unsafe { a.dealloc(p, layout) };
        }
    }
}
