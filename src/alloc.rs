//! The process's allocator: mimalloc, entered through its plain `mi_malloc` wherever that already
//! gives the alignment asked for.
//!
//! The `mimalloc` crate's allocator passes every allocation to `mi_malloc_aligned`, whose fast
//! path only takes blocks of at most 1 KiB that happen to be aligned; every larger one (read
//! and write buffers, big futures) went through its generic aligned path at ~180 instructions
//! (callgrind: 4 % of a request's instructions in Redis mode). `mi_malloc` returns blocks aligned
//! to 16 bytes from 16 bytes up (8 below), so, as the standard library does for the system
//! allocator, requests with `align <= 16 && align <= size` go to the plain calls and only the
//! rest to the aligned ones.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// mimalloc's guaranteed alignment for blocks of at least this size (`MI_MAX_ALIGN_SIZE`).
const PLAIN_ALIGN: usize = 16;

/// mimalloc as the global allocator.
pub struct MiMalloc;

#[inline]
fn plain(align: usize, size: usize) -> bool {
    align <= PLAIN_ALIGN && align <= size
}

// SAFETY: every pointer handed out comes from mimalloc with at least the layout's alignment (the
// plain calls only where mimalloc guarantees it, see `plain`), and is freed or resized by
// mimalloc, which accepts pointers from any of its allocation calls.
unsafe impl GlobalAlloc for MiMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if plain(layout.align(), layout.size()) {
            mi::mi_malloc(layout.size()) as *mut u8
        } else {
            mi::mi_malloc_aligned(layout.size(), layout.align()) as *mut u8
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if plain(layout.align(), layout.size()) {
            mi::mi_zalloc(layout.size()) as *mut u8
        } else {
            mi::mi_zalloc_aligned(layout.size(), layout.align()) as *mut u8
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        mi::mi_free(ptr as *mut c_void);
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if plain(layout.align(), new_size) {
            mi::mi_realloc(ptr as *mut c_void, new_size) as *mut u8
        } else {
            mi::mi_realloc_aligned(ptr as *mut c_void, new_size, layout.align()) as *mut u8
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every size from 1 to 4 KiB (and some larger) at every alignment up to 4 KiB: the pointer is
    /// aligned, the memory usable, and it survives a resize with its contents.
    #[test]
    fn pointers_are_aligned_and_usable() {
        let a = MiMalloc;
        let sizes = (1..=4096).chain([8191, 65536, 1 << 20]);
        for size in sizes {
            for align in [1, 2, 4, 8, 16, 32, 64, 128, 4096] {
                let layout = Layout::from_size_align(size, align).unwrap();
                unsafe {
                    let p = a.alloc(layout);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "size {size} align {align}");
                    p.write_bytes(0xab, size);
                    let grown = size * 2 + 1;
                    let q = a.realloc(p, layout, grown);
                    assert_eq!(
                        q as usize % align,
                        0,
                        "realloc {size}->{grown} align {align}"
                    );
                    assert!(std::slice::from_raw_parts(q, size)
                        .iter()
                        .all(|&b| b == 0xab));
                    a.dealloc(q, Layout::from_size_align(grown, align).unwrap());
                    let z = a.alloc_zeroed(layout);
                    assert_eq!(z as usize % align, 0);
                    assert!(std::slice::from_raw_parts(z, size).iter().all(|&b| b == 0));
                    // Shrinking keeps the alignment and the bytes that stay.
                    z.write_bytes(0xcd, size);
                    let small = size.div_ceil(2);
                    let y = a.realloc(z, layout, small);
                    assert_eq!(
                        y as usize % align,
                        0,
                        "shrink {size}->{small} align {align}"
                    );
                    assert!(std::slice::from_raw_parts(y, small)
                        .iter()
                        .all(|&b| b == 0xcd));
                    a.dealloc(y, Layout::from_size_align(small, align).unwrap());
                }
            }
        }
    }

    /// Not only the first block of a page: 64 blocks of each size and alignment held at once.
    #[test]
    fn every_block_of_a_page_is_aligned() {
        let a = MiMalloc;
        for size in (1..=512).chain((520..=4096).step_by(24)) {
            for align in [8, 16, 32, 64] {
                let layout = Layout::from_size_align(size, align).unwrap();
                let held: Vec<*mut u8> = (0..64).map(|_| unsafe { a.alloc(layout) }).collect();
                for &p in &held {
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "size {size} align {align}");
                }
                for p in held {
                    unsafe { a.dealloc(p, layout) };
                }
            }
        }
    }
}
