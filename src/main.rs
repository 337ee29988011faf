//! The `projectionist` binary: the library's command line with the built-in
//! projectors registered.

use std::process::ExitCode;

fn main() -> ExitCode {
    projectionist::cli::main_with(projectionist::projector::Registry::with_builtins())
}
