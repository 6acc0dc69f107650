//! A size-class allocator for plugin memory: most of a mapping call is small strings and
//! field vectors allocated, passed across the component boundary and freed again, and
//! serving those from per-size free lists is several times cheaper than wasi-libc's malloc.
//!
//! Installed as the global allocator of wasm32 plugins by the default `small-alloc`
//! feature. A plugin that brings its own `#[global_allocator]` turns the feature off:
//! `tandem-plugin-api = { version = "...", default-features = false }`.
//!
//! Blocks up to [`LARGEST_SMALL`] bytes (alignment up to [`GRANULE`]) come from one free list
//! per 16-byte size class; a freed block goes back on its list and is never returned to the
//! system allocator, so a plugin's memory stays at its peak use per class (a wasm memory
//! can't shrink anyway). Anything bigger or more aligned goes straight to the system
//! allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ptr;

/// Size-class width and the alignment every small block has.
pub const GRANULE: usize = 16;
/// Number of size classes: blocks of 16, 32, ..., 2048 bytes (a record's field vector of a
/// few dozen fields fits).
const CLASSES: usize = 128;
/// The largest size served from the free lists.
pub const LARGEST_SMALL: usize = GRANULE * CLASSES;

/// The allocator. Single-threaded by construction: wasm32-wasip2 components have one thread.
pub struct SmallAlloc {
    /// Head of each class's free list; a free block's first word points to the next one.
    heads: UnsafeCell<[*mut u8; CLASSES]>,
}

// SAFETY: a component instance runs on one thread at a time and wasm32-wasip2 has no
// threads, so the free lists are never touched concurrently. The allocator is installed as
// the global allocator only on wasm32 (see lib.rs); native tests use private instances from
// one thread.
unsafe impl Sync for SmallAlloc {}

impl SmallAlloc {
    /// An allocator with empty free lists.
    pub const fn new() -> Self {
        Self {
            heads: UnsafeCell::new([ptr::null_mut(); CLASSES]),
        }
    }

    /// The size class serving `layout`, or `None` when the system allocator must.
    fn class_of(layout: Layout) -> Option<usize> {
        let size = layout.size();
        (size != 0 && size <= LARGEST_SMALL && layout.align() <= GRANULE)
            .then(|| (size - 1) / GRANULE)
    }

    fn block_layout(class: usize) -> Layout {
        // SAFETY: a non-zero multiple of 16 with alignment 16 is always a valid layout.
        unsafe { Layout::from_size_align_unchecked((class + 1) * GRANULE, GRANULE) }
    }
}

impl Default for SmallAlloc {
    fn default() -> Self {
        Self::new()
    }
}

unsafe impl GlobalAlloc for SmallAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(class) = Self::class_of(layout) else {
            // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
            return unsafe { System.alloc(layout) };
        };
        // SAFETY: single-threaded (see the `Sync` impl); no other reference to the heads
        // lives across this call.
        let heads = unsafe { &mut *self.heads.get() };
        let head = heads[class];
        if head.is_null() {
            // SAFETY: a valid, non-zero-sized layout.
            unsafe { System.alloc(Self::block_layout(class)) }
        } else {
            // SAFETY: `head` is a free block of this class; its first word holds the next.
            heads[class] = unsafe { head.cast::<*mut u8>().read() };
            head
        }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        let Some(class) = Self::class_of(layout) else {
            // SAFETY: a block this allocator got from the system with this layout.
            return unsafe { System.dealloc(block, layout) };
        };
        // SAFETY: single-threaded; `block` came from this class (same layout) and is at least
        // 16 bytes, aligned to 16, so it can hold the list link.
        unsafe {
            let heads = &mut *self.heads.get();
            block.cast::<*mut u8>().write(heads[class]);
            heads[class] = block;
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size`, rounded up to the alignment, fits isize.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        let (old_class, new_class) = (Self::class_of(layout), Self::class_of(new_layout));
        if old_class.is_some() && old_class == new_class {
            return block; // the block already has room
        }
        if old_class.is_none() && new_class.is_none() {
            // SAFETY: both sizes are the system allocator's; forwarded unchanged.
            return unsafe { System.realloc(block, layout, new_size) };
        }
        // SAFETY: standard move: allocate, copy the smaller size, free the old block.
        unsafe {
            let moved = self.alloc(new_layout);
            if !moved.is_null() {
                ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                self.dealloc(block, layout);
            }
            moved
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_blocks_are_reused_by_their_class_only() {
        let alloc = SmallAlloc::new();
        let small = Layout::from_size_align(24, 8).unwrap();
        let other = Layout::from_size_align(100, 8).unwrap();
        unsafe {
            let a = alloc.alloc(small);
            assert!(!a.is_null() && (a as usize).is_multiple_of(GRANULE));
            alloc.dealloc(a, small);
            let b = alloc.alloc(other);
            assert_ne!(a, b, "a 100-byte request must not get a 32-byte block");
            let c = alloc.alloc(Layout::from_size_align(17, 1).unwrap());
            assert_eq!(a, c, "17..=32 bytes share the class the freed block is in");
            alloc.dealloc(b, other);
            alloc.dealloc(c, Layout::from_size_align(17, 1).unwrap());
        }
    }

    #[test]
    fn realloc_keeps_contents_across_classes_and_to_the_system() {
        let alloc = SmallAlloc::new();
        let layout = Layout::from_size_align(10, 1).unwrap();
        unsafe {
            let p = alloc.alloc(layout);
            for i in 0..10 {
                p.add(i).write(i as u8);
            }
            let same = alloc.realloc(p, layout, 16);
            assert_eq!(same, p, "growing within the class keeps the block");
            let bigger = alloc.realloc(same, Layout::from_size_align(16, 1).unwrap(), 4000);
            for i in 0..10 {
                assert_eq!(bigger.add(i).read(), i as u8);
            }
            let back = alloc.realloc(bigger, Layout::from_size_align(4000, 1).unwrap(), 40);
            for i in 0..10 {
                assert_eq!(back.add(i).read(), i as u8);
            }
            alloc.dealloc(back, Layout::from_size_align(40, 1).unwrap());
        }
    }

    #[test]
    fn large_or_overaligned_requests_go_to_the_system() {
        let largest = LARGEST_SMALL;
        assert_eq!(SmallAlloc::class_of(Layout::from_size_align(largest + 1, 8).unwrap()), None);
        assert_eq!(
            SmallAlloc::class_of(Layout::from_size_align(largest, 16).unwrap()),
            Some(CLASSES - 1)
        );
        assert_eq!(SmallAlloc::class_of(Layout::from_size_align(64, 32).unwrap()), None);
        assert_eq!(SmallAlloc::class_of(Layout::from_size_align(0, 1).unwrap()), None);
        assert_eq!(SmallAlloc::class_of(Layout::from_size_align(512, 16).unwrap()), Some(31));
        assert_eq!(SmallAlloc::class_of(Layout::from_size_align(1, 1).unwrap()), Some(0));
    }
}
