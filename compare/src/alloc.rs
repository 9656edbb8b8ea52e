//! Heap accounting: a counting wrapper around the system allocator, and [`measure`], which
//! reports the time of the timed sections of a run and the peak heap it reached.
//!
//! The harness is single-threaded, so one pair of global counters (bytes live now, and the most
//! ever live since the last reset) describes exactly what the engine under test holds. Only the
//! heap is counted; stacks and the allocator's own overhead are not.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// The global allocator of the compare binary: [`System`], plus byte counts.
struct Counting;

/// Bytes currently allocated.
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// The highest value `LIVE` reached since [`measure`] last reset it.
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let now = LIVE.fetch_add(bytes, Relaxed) + bytes;
    PEAK.fetch_max(now, Relaxed);
}

fn shrank(bytes: usize) {
    LIVE.fetch_sub(bytes, Relaxed);
}

// SAFETY: every method forwards to the system allocator with the caller's own arguments and
// returns its answer unchanged; the only addition is updating two atomics, which neither
// allocates nor touches the memory handed out. Counts change only when the system allocator
// succeeded, so a failed allocation is not counted.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                shrank(layout.size() - new_size);
            }
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        shrank(layout.size());
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Time and memory of one run of one workload on one engine.
#[derive(Clone, Copy, Debug)]
pub struct Measured {
    /// Wall time of the timed sections (setup and checks excluded).
    pub time: Duration,
    /// The most heap bytes live at once from the start of the run to the end of its last timed
    /// section, above what was live when the run started.
    pub peak: usize,
}

/// Handed to the body of a [`measure`]d run to mark what is timed.
pub struct Meter {
    elapsed: Duration,
    peak: usize,
}

impl Meter {
    /// Runs `f` as a timed section.
    pub fn time<R>(&mut self, f: impl FnOnce() -> R) -> R {
        let start = Instant::now();
        let out = f();
        self.elapsed += start.elapsed();
        // The peak counter only grows until the next reset, so its value here covers setup and
        // every timed section so far; correctness checks after the last section are left out.
        self.peak = PEAK.load(Relaxed);
        out
    }
}

/// Runs `body`, which sets up a workload, runs its timed sections through the [`Meter`] and
/// checks the result, and reports the time of the timed sections and the peak heap above the
/// heap live at the start.
pub fn measure<T>(body: impl FnOnce(&mut Meter) -> T) -> (T, Measured) {
    let base = LIVE.load(Relaxed);
    PEAK.store(base, Relaxed);
    let mut meter = Meter {
        elapsed: Duration::ZERO,
        peak: base,
    };
    let out = body(&mut meter);
    let measured = Measured {
        time: meter.elapsed,
        peak: meter.peak.saturating_sub(base),
    };
    (out, measured)
}

/// Repeats a self-contained run while the runs so far took under 0.3 s in all (at most five
/// times) and keeps the fastest time, so that millisecond-sized workloads are not one noisy
/// sample. The result and peak heap are the first run's; every run does the same work.
pub fn best_of<T, E>(
    mut run: impl FnMut() -> Result<(T, Measured), E>,
) -> Result<(T, Measured), E> {
    let (out, mut best) = run()?;
    let mut total = best.time;
    let mut runs = 1;
    while runs < 5 && total < Duration::from_millis(300) {
        let (_, m) = run()?;
        best.time = best.time.min(m.time);
        total += m.time;
        runs += 1;
    }
    Ok((out, best))
}
