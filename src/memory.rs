//! The process's memory between the phases of the train and score steps: freed memory goes
//! back to the system, and a debug line reports what is left.
//!
//! Rows and records built on the worker threads are freed into those threads' allocator
//! arenas, which glibc keeps. At a million contacts that was about 390 MiB of resident
//! memory the process no longer used, enough to put the train step over 1 GiB.

use crate::level::Level;
use crate::model::heap::return_freed;

/// Ends one phase of a step (`score`, `train`) and returns the memory freed so far to the
/// system. At debug level it then logs the phase's time and the process's resident, peak and
/// allocated memory. The scale benchmark reads these lines.
pub(crate) fn end_phase(step: &str, level: Level, name: &str, started: std::time::Instant) {
    return_freed();
    // Reading /proc costs a file read, so it happens only when the line is logged.
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    tracing::debug!(
        step,
        %level,
        phase = name,
        seconds = started.elapsed().as_secs_f64(),
        rss_mib = status_mib("VmRSS"),
        peak_rss_mib = status_mib("VmHWM"),
        heap_in_use_mib = heap_in_use_mib(),
        "step phase"
    );
}

/// Reads a `kB` line such as `VmHWM` from `/proc/self/status`, in MiB. Off Linux it
/// returns `None`.
fn status_mib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod glibc {
    /// glibc's `struct mallinfo2`, which sums every arena.
    #[repr(C)]
    pub(super) struct MallInfo2 {
        pub arena: usize,
        pub ordblks: usize,
        pub smblks: usize,
        pub hblks: usize,
        pub hblkhd: usize,
        pub usmblks: usize,
        pub fsmblks: usize,
        pub uordblks: usize,
        pub fordblks: usize,
        pub keepcost: usize,
    }

    extern "C" {
        pub(super) fn mallinfo2() -> MallInfo2;
    }
}

/// Returns the memory the allocator has handed out and not had back, in MiB. The rest of
/// the resident memory was freed but is kept by the allocator. Off glibc it returns `None`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn heap_in_use_mib() -> Option<u64> {
    // SAFETY: mallinfo2 takes no arguments and returns a plain struct. glibc has it since
    // 2.33, and this build links glibc.
    let info = unsafe { glibc::mallinfo2() };
    Some(((info.uordblks + info.hblkhd) / (1024 * 1024)) as u64)
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn heap_in_use_mib() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn heap_in_use_follows_allocations() {
        let before = heap_in_use_mib().expect("glibc reports its arenas");
        // 256 MiB, so that the other tests running beside it change the count by far less.
        let block: Vec<u8> = vec![1; 256 * 1024 * 1024];
        let during = heap_in_use_mib().expect("glibc reports its arenas");
        assert!(during >= before + 200, "{before} MiB then {during} MiB");
        drop(block);
        return_freed();
        let after = heap_in_use_mib().expect("glibc reports its arenas");
        assert!(after + 200 <= during, "{during} MiB then {after} MiB");
    }
}
