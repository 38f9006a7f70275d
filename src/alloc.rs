//! The system allocator, asking the kernel for transparent huge pages on
//! large blocks once [`huge_pages`] is called (the offline `batch` command).
//!
//! An offline run from a large edge file fills much fresh memory (parsed
//! pairs, sort keys, each worker's share); with 4 KiB pages every 4 KiB is a
//! page fault, a sizeable part of the run. A kernel in transparent huge
//! page `madvise` mode gives huge pages only where asked; asked, one fault
//! maps 2 MiB. The streaming job
//! does not ask: a huge-page fault may compact memory first, a stall its
//! latency should not take.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, Ordering};

/// Blocks from this size are advised.
const FROM: usize = 8 << 20;
/// A huge page.
const HUGE: usize = 2 << 20;

static ON: AtomicBool = AtomicBool::new(false);

/// From now on, large blocks are given huge pages where the kernel can.
pub fn huge_pages() {
    ON.store(true, Ordering::Relaxed);
}

/// [`System`], with large blocks advised.
pub struct Allocator;

fn advise(p: *mut u8, len: usize) {
    if p.is_null() || len < FROM || !ON.load(Ordering::Relaxed) {
        return;
    }
    // The whole huge pages within the block.
    let start = (p as usize).div_ceil(HUGE) * HUGE;
    let end = (p as usize + len) / HUGE * HUGE;
    if end > start {
        // SAFETY: the range lies within a block the allocator just handed
        // out; the advice changes how it is backed, not its contents. A
        // failure (no THP support) leaves ordinary pages.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
        }
    }
}

// SAFETY: every call is passed to `System` unchanged; `advise` only
// advises memory of the block returned.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's guarantees, passed on.
        let p = unsafe { System.alloc(layout) };
        advise(p, layout.size());
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.alloc_zeroed(layout) };
        advise(p, layout.size());
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(p, layout) }
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let q = unsafe { System.realloc(p, layout, new_size) };
        advise(q, new_size);
        q
    }
}
