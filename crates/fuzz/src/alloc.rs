//! A counting global allocator, so a target can assert that hostile input
//! did not make the code under test allocate more than the input justifies.
//!
//! The binary that runs the targets installs it:
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOC: assent_fuzz::alloc::Counting = assent_fuzz::alloc::Counting;
//! ```
//!
//! Counters are per thread (the test harness runs targets on parallel
//! threads, and one target's buffers must not count against another's).
//! Memory freed on another thread than the one that allocated it makes the
//! live figure of both threads approximate; the targets do not do that.
//! Allocations inside C code (zstd's context) bypass Rust's allocator and
//! are not seen: zstd's one-shot decompression writes straight into the
//! caller's buffer, which is counted.
//!
//! Without the allocator installed every figure reads 0 and [`Meter::check`]
//! checks nothing; [`installed`] tells which.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Wraps the system allocator and counts per thread.
pub struct Counting;

fn on_alloc(size: usize) {
    // `try_with`: during thread teardown the slots may already be gone.
    let _ = LIVE.try_with(|live| {
        let now = live.get().saturating_add(size);
        live.set(now);
        let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
    });
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
}

fn on_dealloc(size: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(size)));
}

// SAFETY: every call is forwarded to `System` unchanged; the bookkeeping
// only touches const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            on_alloc(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            on_alloc(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        on_dealloc(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // Counted as a new block before the old one goes: a realloc may
            // briefly need both.
            on_alloc(new_size);
            on_dealloc(layout.size());
        }
        p
    }
}

/// True once the counting allocator has seen an allocation, i.e. it is the
/// global allocator of this binary.
pub fn installed() -> bool {
    if !INSTALLED.load(Ordering::Relaxed) {
        // Any allocation through `Counting` moves LIVE; probe with one.
        let before = LIVE.with(Cell::get);
        let probe = std::hint::black_box(vec![0u8; 64]);
        let during = LIVE.with(Cell::get);
        drop(probe);
        if during > before {
            INSTALLED.store(true, Ordering::Relaxed);
        }
    }
    INSTALLED.load(Ordering::Relaxed)
}

/// Allocation figures of the current thread since a [`Meter`] started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Highest live heap above the level when the meter started.
    pub peak_growth: usize,
    /// The largest single allocation (or reallocation target).
    pub largest: usize,
}

/// Measures allocation on the current thread from its creation on.
#[derive(Debug)]
pub struct Meter {
    base: usize,
}

impl Meter {
    pub fn start() -> Meter {
        let base = LIVE.with(Cell::get);
        PEAK.with(|p| p.set(base));
        LARGEST.with(|l| l.set(0));
        Meter { base }
    }

    pub fn usage(&self) -> Usage {
        Usage {
            peak_growth: PEAK.with(Cell::get).saturating_sub(self.base),
            largest: LARGEST.with(Cell::get),
        }
    }

    /// Panics (naming `what`) if anything since the start went over
    /// `budget` bytes, live at once or in one allocation.
    pub fn check(&self, what: &str, budget: usize) {
        let u = self.usage();
        assert!(
            u.peak_growth <= budget && u.largest <= budget,
            "{what}: allocated too much for its input: peak {} bytes, largest single \
             allocation {} bytes, budget {budget} bytes",
            u.peak_growth,
            u.largest
        );
    }
}
