//! Process memory readings from `/proc/self` (Linux only).

use std::fs;

/// Reads a `kB` field such as `VmHWM` from `/proc/self/status`.
fn status_kib(field: &str) -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

/// Returns the peak resident set size (`VmHWM`) so far, in KiB.
pub fn peak_kib() -> Option<u64> {
    status_kib("VmHWM")
}

/// Resets `VmHWM` to the current resident size by writing 5 to `/proc/self/clear_refs`
/// (Linux 4.0 and later), and returns the current resident size (`VmRSS`) in KiB.
///
/// If the reset fails, `VmHWM` keeps the earlier peak (data generation included), so a
/// later [`peak_kib`] reading overstates the training peak. That shows as a peak equal to the
/// peak before the reset.
pub fn reset_peak() -> Option<u64> {
    // NOTE: failure is ignored on purpose, see the doc comment; the benchmark still runs.
    let _ = fs::write("/proc/self/clear_refs", "5");
    status_kib("VmRSS")
}
