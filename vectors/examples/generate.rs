//! Writes the vector files into `vectors/` (or the directory given as the first argument) and
//! verifies them.
//!
//! The same as `cargo run -p slim-conformance -- vectors generate`, without building the runner.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(slim_vectors::committed_dir);
    let written = match slim_vectors::generate(&dir) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    for p in &written {
        println!("wrote {}", p.display());
    }
    match slim_vectors::verify(&dir) {
        Ok(report) => {
            print!("{report}");
            if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
