//! The agent runs for a whole session on the user's machine, mostly idle
//! between bursts (a keyframe, a photo dragged, a file sent). glibc's
//! malloc raises its mmap threshold to the size of the largest block
//! freed so far (up to 32 MiB) and its trim threshold to twice that, so
//! after the first big frame every later buffer of a few MB comes from a
//! thread's arena and stays resident once freed: measured, 3 to 6 MB of
//! the agent's idle memory (BENCHMARKS.md, issue 20). Fixed thresholds
//! turn that off: blocks from [`MMAP_THRESHOLD`] up are mapped on their
//! own and unmapped when freed, and free memory at an arena's top above
//! [`TRIM_THRESHOLD`] goes back at once.

/// Blocks this large or larger get their own mapping.
pub const MMAP_THRESHOLD: usize = 256 * 1024;
/// Free memory at the top of a heap beyond this is returned.
pub const TRIM_THRESHOLD: usize = 1024 * 1024;

/// Sets the thresholds for the rest of the process. Call it first thing
/// in `main`, before threads start. Returns whether the allocator took
/// them (`false` off glibc, where nothing is changed).
pub fn give_back_freed_memory() -> bool {
    set_thresholds()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_thresholds() -> bool {
    let to_int = |n: usize| libc::c_int::try_from(n).unwrap_or(libc::c_int::MAX);
    // SAFETY: mallopt only changes the allocator's parameters; it is
    // thread-safe in glibc and takes plain integers.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, to_int(MMAP_THRESHOLD)) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, to_int(TRIM_THRESHOLD)) == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_thresholds() -> bool {
    false
}
