//! The one memory setting a process running the manager needs: no transparent huge pages.
//!
//! shoald allocates through mimalloc (its `main.rs`), and so do the manager's benchmarks,
//! to measure what shoald does. mimalloc asks for transparent huge pages on its arenas,
//! and each 2 MiB page a thread touches is then resident whole: a worker's shoald went
//! from 14 to 60 MiB. This turns them off for the process; call it first thing in `main`,
//! before any thread starts (mimalloc then gets 4 KiB pages).

/// Turns transparent huge pages off for this process, or says why it could not.
#[allow(unsafe_code)]
pub fn no_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and touches no memory of ours.
    let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if rc != 0 {
        eprintln!(
            "could not turn off transparent huge pages ({}); memory use may be higher",
            std::io::Error::last_os_error()
        );
    }
}
