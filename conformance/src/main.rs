//! `slim-conformance`: see `slim-conformance --help` and conformance/README.md.

fn main() {
    std::process::exit(slim_conformance::cli::main());
}
