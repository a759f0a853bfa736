//! The gateway binary's global allocator: mimalloc, asked through
//! `mi_malloc`, `mi_zalloc` and `mi_realloc` when the layout's alignment
//! is one every mimalloc block has, and through its aligned entry points
//! otherwise.
//!
//! Why not `mimalloc::MiMalloc`: it sends every allocation to
//! `mi_malloc_aligned`, whose fast path serves only blocks of at most
//! 1 KiB; anything larger (a connection's buffers, a body, a JSON
//! document) went through mimalloc's generic aligned path and its
//! over-allocation, about 200 instructions a call where `mi_malloc` takes
//! a few dozen. Counted by callgrind (BENCHMARKS.md): ~150 allocations a
//! billed request, 24 of them down that path, 9.4k instructions in all.
//!
//! The rule is Rust's own `System` allocator's: the plain call when the
//! alignment is at most what the allocator always gives. mimalloc's
//! blocks come in whole machine words (sizes of 8, 16, 24, ... bytes on
//! pages that start 16-aligned), so every block is word-aligned, and only
//! that is assumed: a layout aligned to more takes the aligned call.

use core::alloc::{GlobalAlloc, Layout};
use core::ffi::c_void;
use libmimalloc_sys as mi;

/// The alignment every mimalloc block has: a machine word.
const WORD: usize = core::mem::size_of::<usize>();

/// mimalloc as the global allocator (see the crate's docs).
pub struct Mimalloc;

/// Whether `align` is one the plain entry points guarantee.
#[inline]
fn plain(align: usize) -> bool {
    align <= WORD
}

#[allow(unsafe_code)]
// SAFETY: each method hands mimalloc a layout the caller vouches for and
// returns its block, which is at least as aligned as the layout asks
// (`plain` holds only for alignments every block has); `mi_free` frees a
// block from any of these calls.
unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if plain(layout.align()) {
            mi::mi_malloc(layout.size()).cast()
        } else {
            mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if plain(layout.align()) {
            mi::mi_zalloc(layout.size()).cast()
        } else {
            mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        mi::mi_free(ptr.cast::<c_void>());
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if plain(layout.align()) {
            mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
        } else {
            mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, unsafe_code)]
    use super::*;

    /// Every size a request's buffers take, at every alignment a Rust type
    /// may ask for: each block is aligned, writable, grows and shrinks
    /// with its bytes kept, and is zeroed when asked.
    #[test]
    fn blocks_are_aligned_kept_and_zeroed() {
        let sizes = [1, 7, 8, 15, 16, 24, 40, 1000, 1024, 1025, 3000, 4096, 65_537, 1 << 20];
        for &size in &sizes {
            for align in [1, 2, 4, 8, 16, 32, 64, 128, 4096] {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: a non-zero-sized layout; each block is freed once.
                unsafe {
                    let zeroed = Mimalloc.alloc_zeroed(layout);
                    assert!(
                        !zeroed.is_null() && (zeroed as usize).is_multiple_of(align),
                        "{size} at {align}"
                    );
                    assert!(core::slice::from_raw_parts(zeroed, size).iter().all(|&b| b == 0));
                    Mimalloc.dealloc(zeroed, layout);

                    let block = Mimalloc.alloc(layout);
                    assert!(!block.is_null() && (block as usize).is_multiple_of(align), "{size} at {align}");
                    core::ptr::write_bytes(block, 0xA5, size);
                    let grown = Mimalloc.realloc(block, layout, size * 3);
                    assert!((grown as usize).is_multiple_of(align), "{size} grown at {align}");
                    assert!(core::slice::from_raw_parts(grown, size).iter().all(|&b| b == 0xA5));
                    let grown_layout = Layout::from_size_align(size * 3, align).unwrap();
                    let half = size.div_ceil(2);
                    let shrunk = Mimalloc.realloc(grown, grown_layout, half);
                    assert!((shrunk as usize).is_multiple_of(align), "{size} shrunk at {align}");
                    assert!(core::slice::from_raw_parts(shrunk, half).iter().all(|&b| b == 0xA5));
                    Mimalloc.dealloc(shrunk, Layout::from_size_align(half, align).unwrap());
                }
            }
        }
    }
}
