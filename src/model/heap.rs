//! Hands memory the process has freed back to the system.
//!
//! It lives with the model because the tree fit frees its training rows while it copies
//! them, and the benchmark program compiles this module on its own.

/// Hands the free pages of every allocator arena back to the system. Off glibc it does
/// nothing.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(crate) fn return_freed() {
    extern "C" {
        fn malloc_trim(pad: usize) -> i32;
    }
    // SAFETY: malloc_trim takes a byte count and takes each arena's lock while it releases
    // that arena's free pages, so any thread may call it.
    unsafe {
        malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn return_freed() {}
