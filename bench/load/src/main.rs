//! `slim-bench`: see the crate docs and `bench/LOAD.md`.

#![forbid(unsafe_code)]

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mut out = std::io::stdout();
    let code = slim_bench::cli::run_cli(args, &mut out).await;
    std::process::exit(code);
}
