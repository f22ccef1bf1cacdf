//! Giving freed heap back to the system.
//!
//! Start-up parses the kernel's BTF (several MiB, twice: for the offsets and in the loader) and
//! each scan allocates and frees transient buffers. glibc keeps freed memory in its arenas unless
//! it sits at the very top of the heap, so without this the agent's resident set stays at its
//! high-water mark: 27 MiB of freed start-up memory on an idle host, measured (1.3 MiB after).

/// Returns free heap pages to the kernel (`malloc_trim(0)`, glibc only; elsewhere a no-op).
pub(crate) fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and releases glibc's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}
