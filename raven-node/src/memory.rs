//! Keeps the daemon's resident memory close to what it actually uses, with glibc's allocator.
//!
//! Why: the proxy moves bursts of short-lived buffers (HTTP/2 frames, socket reads) between
//! threads. With glibc defaults every thread that contends gets its own malloc arena (up to
//! 8 × cores), a buffer freed on another thread leaves a hole in its arena, and freed memory
//! below the top of a heap is never given back. Measured with the proxy bench (1,000 busy
//! streams, `--only stall`): peak RSS of the cloud process 79 MiB with default arenas, 75–79
//! MiB with two, 54–57 MiB with one, and without trimming it stayed near the peak after the
//! burst (70 MiB; 9 MiB with the trim). Two measures, both glibc-only (no-ops elsewhere):
//! - [`tune_allocator`] at start: one arena ([`ARENAS`]); small blocks still come from each
//!   thread's lock-free cache, and the daemon has few threads (no measurable throughput cost
//!   in the same bench). With the proxy, [`tune_for_buffer_churn`] fixes the mmap and trim
//!   thresholds ([`MMAP_THRESHOLD`], [`KEEP_FREE_TOP`]): by default glibc serves 128–256 KiB
//!   buffers (socket reads, frames) with fresh mmaps or shrinks the heap on every free, so
//!   each buffer is page-faulted and zeroed anew (≈ 10 % of the proxy's CPU in a single-stream profile); here they are reused
//!   from the heap, and the trim tick below gives memory back instead;
//! - [`trim_loop`]: every [`TRIM_INTERVAL`], when the allocator's free memory grew by
//!   [`TRIM_THRESHOLD`] or more, `malloc_trim(0)` returns those pages to the kernel.

use std::time::Duration;

/// Malloc arenas at most.
pub const ARENAS: i32 = 1;
/// Blocks at least this large get their own mapping (rare; frames and reads are ≤ 256 KiB).
pub const MMAP_THRESHOLD: i32 = 4 << 20;
/// Free memory at the top of the heap that `free` keeps rather than returning at once.
pub const KEEP_FREE_TOP: i32 = 64 << 20;
/// How often the allocator's free memory is checked.
pub const TRIM_INTERVAL: Duration = Duration::from_secs(5);
/// Growth of the allocator's free memory that makes returning it worth a trim.
pub const TRIM_THRESHOLD: usize = 4 << 20;

/// Caps the malloc arenas. Call first thing in `main`, before threads start.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; M_ARENA_MAX takes any positive count.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
    }
}

/// Fixes the mmap and trim thresholds, for the proxy: only together with [`trim_loop`],
/// which the proxy's runtime runs (without the loop, the fixed trim threshold would keep
/// freed heap memory mapped; a node without the proxy keeps glibc's adaptive defaults).
pub fn tune_for_buffer_churn() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; each value is in its documented range.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, KEEP_FREE_TOP);
    }
}

/// Bytes the allocator holds free (allocated from the kernel, not in use).
pub fn free_held() -> usize {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 only reads the allocator's statistics.
        let info = unsafe { libc::mallinfo2() };
        info.fordblks
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        0
    }
}

/// Decides whether to trim: the allocator's free memory grew by at least [`TRIM_THRESHOLD`]
/// since `floor`, the least free memory seen since the last trim.
///
/// Why growth and not the level: trimmed pages still count as free in the allocator's
/// statistics, so a level test would trim again on every tick after one burst.
pub fn should_trim(free_now: usize, floor: usize) -> bool {
    free_now.saturating_sub(floor) >= TRIM_THRESHOLD
}

/// Returns the allocator's free pages to the kernel.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free pages; it is safe to call at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Trims every [`TRIM_INTERVAL`] when [`should_trim`] says so, for as long as the runtime
/// runs.
pub async fn trim_loop() {
    let mut tick = tokio::time::interval(TRIM_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut floor = free_held();
    loop {
        tick.tick().await;
        let free = free_held();
        if should_trim(free, floor) {
            trim();
            tracing::debug!(
                free_bytes = free,
                "returned free allocator memory to the kernel"
            );
            floor = free;
        } else {
            floor = floor.min(free);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trim on growth since the floor, not on the level.
    #[test]
    fn trims_on_growth_of_free_memory() {
        const T: usize = TRIM_THRESHOLD;
        for (free, floor, want) in [
            (0, 0, false),
            (T - 1, 0, false),
            (T, 0, true),
            (50 << 20, 50 << 20, false), // trimmed already at this level
            (50 << 20, 10 << 20, true),
            (usize::MAX, usize::MAX, false),
        ] {
            assert_eq!(should_trim(free, floor), want, "free {free}, floor {floor}");
        }
    }

    /// A real trim gives freed heap pages back: free 60 MiB of 64 KiB blocks (below the mmap
    /// threshold, so they live in the heap; every 16th kept so the heap cannot simply shrink
    /// from the top) and the resident set falls by most of it when [`trim`] runs.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn trim_returns_freed_heap_pages() {
        let blocks: Vec<Vec<u8>> = (0..1024).map(|i| vec![i as u8 | 1; 64 << 10]).collect();
        let kept: Vec<Vec<u8>> = blocks
            .into_iter()
            .enumerate()
            .filter_map(|(i, b)| (i % 16 == 15).then_some(b))
            .collect();
        assert!(
            free_held() >= 32 << 20,
            "expected ≥ 32 MiB free in the allocator after freeing 60 MiB, got {}",
            free_held()
        );
        let before = resident_kib();
        trim();
        let after = resident_kib();
        assert!(
            before.saturating_sub(after) >= 30 << 10,
            "trim released only {} KiB ({before} → {after} KiB resident)",
            before.saturating_sub(after)
        );
        assert!(kept.iter().all(|b| b[0] & 1 == 1));
    }

    fn resident_kib() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .expect("VmRSS in /proc/self/status")
    }
}
