//! The `projectionist` binary: the library's command line with the built-in
//! projectors registered.

use std::process::ExitCode;

// The write path builds and drops a batch's buffers (hundreds of kilobytes)
// for every batch; glibc's allocator answers that with page faults and free-list
// consolidation that cost about a sixth of a batched write's CPU time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    projectionist::cli::main_with(projectionist::projector::Registry::with_builtins())
}
