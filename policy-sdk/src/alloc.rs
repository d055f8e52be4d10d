//! The policy's heap on wasm: a bump allocator over an arena in the module's own zero-initialised data.
//!
//! Why: the gateway runs every evaluation in a fresh instance that lives for microseconds and is then
//! thrown away whole. A general-purpose allocator is wasted work there — Rust's default (dlmalloc) starts
//! every instance by growing linear memory, which costs the host a page-protection change on the way in and
//! another when the slot is recycled. Bumping a pointer through memory that is already part of the instance
//! costs neither. Freed memory is reused only when it is the most recent allocation (the common
//! `Vec`/`String` growth pattern); everything else is reclaimed when the instance is dropped.
//!
//! When the arena runs out, memory grows in chunks of at least [`GROW_CHUNK`] pages, still bounded by the
//! memory limit the gateway sets per policy (growth past it traps, and the gateway denies).
//!
//! Opt out with `default-features = false` (feature `bump-alloc`) to use your own `#[global_allocator]`.

// A global allocator is an `unsafe impl` by definition; this module is the only other opt-out besides the
// generated bindings.
#![allow(unsafe_code)]

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Bytes of arena in the module's data (zero pages cost nothing until touched).
const ARENA_BYTES: usize = 256 << 10;
/// Pages (64 KiB) to grow by at least, once the arena is used up.
const GROW_CHUNK: usize = 4;
const PAGE: usize = 64 << 10;

#[repr(C, align(16))]
struct Arena(UnsafeCell<[u8; ARENA_BYTES]>);

// SAFETY: wasm32-wasip2 components are single-threaded; the arena is only reached through `Bump`.
unsafe impl Sync for Arena {}

static ARENA: Arena = Arena(UnsafeCell::new([0; ARENA_BYTES]));
/// Next free address and the end of the current region (0 until first use).
static NEXT: AtomicUsize = AtomicUsize::new(0);
static END: AtomicUsize = AtomicUsize::new(0);

pub struct Bump;

impl Bump {
    fn region() -> (usize, usize) {
        let end = END.load(Relaxed);
        if end == 0 {
            let start = ARENA.0.get() as usize;
            NEXT.store(start, Relaxed);
            END.store(start + ARENA_BYTES, Relaxed);
            return (start, start + ARENA_BYTES);
        }
        (NEXT.load(Relaxed), end)
    }
}

// SAFETY: every block handed out lies in the arena or in memory this allocator grew, is aligned as asked,
// and no two live blocks overlap (the pointer only moves forward, except back over the last block freed).
unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let (next, end) = Self::region();
        let start = next.next_multiple_of(layout.align());
        if let Some(stop) = start.checked_add(layout.size())
            && stop <= end
        {
            NEXT.store(stop, Relaxed);
            return start as *mut u8;
        }
        let want = layout.size() + layout.align();
        let pages = want.div_ceil(PAGE).max(GROW_CHUNK);
        let first = core::arch::wasm32::memory_grow(0, pages);
        if first == usize::MAX {
            return core::ptr::null_mut();
        }
        let base = first * PAGE;
        let start = base.next_multiple_of(layout.align());
        NEXT.store(start + layout.size(), Relaxed);
        END.store(base + pages * PAGE, Relaxed);
        start as *mut u8
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // Give back the most recent block; anything else is reclaimed with the instance.
        let _ = NEXT.compare_exchange(ptr as usize + layout.size(), ptr as usize, Relaxed, Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let addr = ptr as usize;
        if addr + layout.size() == NEXT.load(Relaxed)
            && let Some(stop) = addr.checked_add(new_size)
            && stop <= END.load(Relaxed)
        {
            // The last block grows (or shrinks) in place.
            NEXT.store(stop, Relaxed);
            return ptr;
        }
        if new_size <= layout.size() {
            return ptr;
        }
        // SAFETY: the caller guarantees `layout` describes `ptr`'s block and `new_size` is valid for its
        // alignment; the new block does not overlap the old one.
        unsafe {
            let new = self.alloc(Layout::from_size_align_unchecked(new_size, layout.align()));
            if !new.is_null() {
                core::ptr::copy_nonoverlapping(ptr, new, layout.size());
            }
            new
        }
    }
}

#[global_allocator]
static GLOBAL: Bump = Bump;
