//! A counting global allocator: the peak of live heap bytes while one fuzz input is processed.
//!
//! Every binary that links this crate (the smoke test, the libFuzzer targets) allocates through
//! [`CountingAlloc`], which forwards to the system allocator and, on the calling thread only,
//! keeps the bytes currently live and their peak while a [`measure`] call runs. Counters are
//! thread-local, so smoke tests running in parallel threads do not see each other's allocations,
//! and nothing is counted outside [`measure`].
//!
//! A target then asserts a [`Bound`]: `peak ≤ per_byte × input_len + fixed`. The targets' state
//! machines keep state per message they are fed; a bound linear in the input's size says that
//! no input makes them allocate more than a fixed multiple of what was sent (no length field
//! trusted for an allocation, no quadratic table, no state that outlives what created it).
//!
//! Memory freed during [`measure`] that was allocated before it lowers the live count below zero;
//! that only makes the measured peak smaller, never larger, so the check stays sound for what
//! the input itself caused.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The global allocator of every binary linking `slim-fuzz`: the system allocator, counted.
pub struct CountingAlloc;

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

thread_local! {
    /// Whether a [`measure`] call is running on this thread.
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
    /// Bytes allocated minus bytes freed since the running [`measure`] started.
    static LIVE: Cell<isize> = const { Cell::new(0) };
    /// The highest `LIVE` seen.
    static PEAK: Cell<isize> = const { Cell::new(0) };
    /// Allocation calls (including reallocations) since the running [`measure`] started.
    static CALLS: Cell<u64> = const { Cell::new(0) };
    /// Bytes requested since the running [`measure`] started (freed or not).
    static TOTAL: Cell<u64> = const { Cell::new(0) };
}

/// Adds `grow` bytes, records the peak, then removes `shrink` bytes (a reallocation holds both
/// blocks at its peak).
fn account(grow: usize, shrink: usize) {
    // `try_with`: during thread teardown the slots may be gone; the bytes are then not counted.
    let _ = ACTIVE.try_with(|active| {
        if !active.get() {
            return;
        }
        let _ = LIVE.try_with(|live| {
            let up = live
                .get()
                .saturating_add(isize::try_from(grow).unwrap_or(isize::MAX));
            let _ = PEAK.try_with(|peak| peak.set(peak.get().max(up)));
            live.set(up.saturating_sub(isize::try_from(shrink).unwrap_or(isize::MAX)));
        });
        if grow > 0 {
            let _ = CALLS.try_with(|c| c.set(c.get() + 1));
            let _ = TOTAL.try_with(|t| t.set(t.get().saturating_add(grow as u64)));
        }
    });
}

// SAFETY: every method forwards to `System` with the caller's layout and pointer unchanged; the
// accounting touches only const-initialised thread-local `Cell`s, which never allocate.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            account(layout.size(), 0);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            account(layout.size(), 0);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        account(0, layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            account(new_size, layout.size());
        }
        p
    }
}

/// What one [`measure`] call allocated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// The most heap bytes live at once, counted from the start of the call.
    pub peak: usize,
    /// Bytes live at the end that were not live at the start (0 if fewer).
    pub retained: usize,
    /// Allocation and reallocation calls.
    pub calls: u64,
    /// Bytes requested in all, freed or not.
    pub total: u64,
}

/// Resets the counters on drop, so a panic inside [`measure`] leaves the thread clean.
struct Active;

impl Drop for Active {
    fn drop(&mut self) {
        let _ = ACTIVE.try_with(|a| a.set(false));
    }
}

/// Runs `f` and returns its result with the heap usage of this thread while it ran.
///
/// Not re-entrant: a nested call restarts the counters of the outer one.
pub fn measure<R>(f: impl FnOnce() -> R) -> (R, Usage) {
    let _ = LIVE.try_with(|c| c.set(0));
    let _ = PEAK.try_with(|c| c.set(0));
    let _ = CALLS.try_with(|c| c.set(0));
    let _ = TOTAL.try_with(|c| c.set(0));
    let _ = ACTIVE.try_with(|a| a.set(true));
    let guard = Active;
    let r = f();
    drop(guard);
    let get = |k: &'static std::thread::LocalKey<Cell<isize>>| k.try_with(Cell::get).unwrap_or(0);
    let usage = Usage {
        peak: usize::try_from(get(&PEAK)).unwrap_or(0),
        retained: usize::try_from(get(&LIVE)).unwrap_or(0),
        calls: CALLS.try_with(Cell::get).unwrap_or(0),
        total: TOTAL.try_with(Cell::get).unwrap_or(0),
    };
    (r, usage)
}

/// An allocation limit: `peak ≤ per_byte × input_len + fixed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    /// `K`: bytes a target may hold per input byte.
    pub per_byte: usize,
    /// `C`: bytes a target may hold whatever the input (its fixed state).
    pub fixed: usize,
}

impl Bound {
    /// The most bytes an input of `len` bytes may make live.
    pub fn limit(&self, len: usize) -> usize {
        self.per_byte.saturating_mul(len).saturating_add(self.fixed)
    }

    /// Panics (a finding) when `usage` exceeds the bound for an input of `len` bytes.
    pub fn check(&self, target: &str, len: usize, usage: Usage) {
        let limit = self.limit(len);
        assert!(
            usage.peak <= limit,
            "{target}: an input of {len} bytes made {} heap bytes live at once, over the bound \
             {} × {len} + {} = {limit} (allocation amplification)",
            usage.peak,
            self.per_byte,
            self.fixed,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_peak_not_the_end() {
        let ((), usage) = measure(|| {
            let a = vec![0u8; 10_000];
            drop(a);
            let b = vec![0u8; 100];
            std::hint::black_box(&b);
        });
        assert!(usage.peak >= 10_000, "{usage:?}");
        assert!(usage.peak < 11_000, "{usage:?}");
        assert_eq!(usage.retained, 0);
    }

    #[test]
    fn nothing_is_counted_outside_measure() {
        let kept = vec![1u8; 50_000];
        let ((), usage) = measure(|| drop(kept));
        assert_eq!(usage.peak, 0);
    }

    #[test]
    #[should_panic(expected = "allocation amplification")]
    fn the_bound_fails_loudly() {
        let (_v, usage) = measure(|| vec![0u8; 1 << 20]);
        Bound {
            per_byte: 16,
            fixed: 1024,
        }
        .check("test", 10, usage);
    }
}
