//! The process allocator: the system allocator, except that huge requests (1 GiB and up) are
//! served by reserve-nothing anonymous mappings.
//!
//! Why: the `kafka-protocol` decoders size a `Vec` from an array length read off the wire before
//! reading any element. A 14-byte hostile frame can claim four billion elements, and a failed
//! allocation aborts the whole process — every client's broker — before the decoder can notice
//! the frame is too short. With MAP_NORESERVE the kernel grants the address range without
//! committing memory; the decoder then fails at the end of the frame, the connection is closed,
//! and the untouched mapping is returned. Ordinary allocations never take this path.

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};

const HUGE: usize = 1 << 30;
const PAGE: usize = 4096;

pub struct Allocator;

fn is_huge(layout: &Layout) -> bool {
    layout.size() >= HUGE && layout.align() <= PAGE
}

unsafe fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping touches no existing memory.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        p.cast()
    }
}

// SAFETY: every block is freed by the same path that allocated it (decided by its layout, which
// GlobalAlloc guarantees is the same at dealloc), and mappings are page-aligned and zeroed.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            unsafe { map(layout.size()) }
        } else {
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            unsafe { map(layout.size()) }
        } else {
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_huge(&layout) {
            unsafe { libc::munmap(ptr.cast(), layout.size()) };
        } else {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        if !is_huge(&layout) && !is_huge(&new_layout) {
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}
