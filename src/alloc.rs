//! The process allocator: the system allocator, except that huge requests (1 GiB and up) are
//! served by reserve-nothing anonymous mappings.
//!
//! Why: the `kafka-protocol` decoders size a `Vec` from an array length read off the wire before
//! reading any element. A 14-byte hostile frame can claim four billion elements, and a failed
//! allocation aborts the whole process — every client's broker — before the decoder can notice
//! the frame is too short. With MAP_NORESERVE the kernel grants the address range without
//! committing memory; the decoder then fails at the end of the frame, the connection is closed,
//! and the untouched mapping is returned. Ordinary allocations never take this path.
//!
//! [`keep_freed_memory`] also tunes glibc's malloc at start: see there.

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

/// Lets glibc keep freed memory for reuse instead of handing it back to the kernel after every
/// request. Each produce request (about 1 MiB from librdkafka and the Java client) and each
/// follower fetch response is read into a fresh buffer. By default glibc serves the first such
/// buffers with their own mappings, then raises its mmap threshold and serves them from its
/// per-thread heaps, but trims a heap's top as soon as more than twice that threshold is free
/// there — so the next buffer faults its pages in again, 4 KiB at a time, each zeroed by the
/// kernel. Under workload 1 that was 4–6 % of the broker's samples in page faults and 15 % of
/// its CPU per GB in all (BENCHMARKS.md, fourth session). With a fixed mmap threshold of 16 MiB
/// and a trim threshold of 64 MiB, buffers up to 16 MiB come from the heaps and their pages
/// stay mapped for the next request; memory is kept up to what was in use at the peak, not
/// grown beyond it. Call once, before other threads start. No effect outside glibc.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes malloc's parameters; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 16 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}
