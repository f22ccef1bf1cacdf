//! Giving freed heap back to the system.
//!
//! Start-up parses the kernel's BTF (several MiB, twice: for the offsets and in the loader) and
//! each scan allocates and frees transient buffers. glibc keeps freed memory in its arenas unless
//! it sits at the very top of the heap, so without this the agent's resident set stays at its
//! high-water mark: 27 MiB of freed start-up memory on an idle host, measured (1.3 MiB after).
//!
//! `malloc_trim` releases free chunks inside a heap, but not the free top of a thread's arena:
//! that shrinks only past glibc's trim threshold, which glibc raises (up to 64 MiB) each time
//! a large block it had mapped on its own is freed. The scan and kernel-state threads free
//! buffers of several MiB at 100k connections, so their arenas kept about 20 MiB of free memory
//! resident (measured: 50.8 MB anonymous memory before, 30.2 MB with the thresholds below).

/// Fixes glibc's thresholds, so freed memory goes back to the kernel as it is freed: blocks of
/// [`MMAP_THRESHOLD`] bytes and more are mapped on their own (and unmapped when freed), and an
/// arena's free top beyond [`TRIM_THRESHOLD`] is returned at once. Setting either also stops
/// glibc from raising them on its own. Call once, early (glibc only; elsewhere a no-op).
pub(crate) fn keep_heap_small() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets glibc's allocator parameters; both values are in range.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}

/// Bytes from which an allocation gets its own mapping: glibc's initial default (128 KiB),
/// doubled; kept fixed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 256 * 1024;
/// Free bytes at the top of a heap beyond which it is returned: 1 MiB.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: libc::c_int = 1024 * 1024;

/// Returns free heap pages to the kernel (`malloc_trim(0)`, glibc only; elsewhere a no-op).
pub(crate) fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and releases glibc's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}
