//! Writes every target's generated seeds ([`slim_fuzz::seeds`]) as files, one directory per
//! target: `slim-fuzz-seeds <dir>` creates `<dir>/<target>/<seed name>`. `fuzz/run.sh` gives
//! these directories to libFuzzer next to the committed `fuzz/corpus/<target>/`.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: slim-fuzz-seeds <dir>");
        return ExitCode::from(2);
    };
    for target in slim_fuzz::TARGETS {
        let tdir = dir.join(target.name);
        if let Err(e) = std::fs::create_dir_all(&tdir) {
            eprintln!("cannot create {}: {e}", tdir.display());
            return ExitCode::FAILURE;
        }
        let seeds = slim_fuzz::seeds::seeds(target.name);
        for (name, data) in &seeds {
            let file: String = name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let path = tdir.join(file);
            if let Err(e) = std::fs::write(&path, data) {
                eprintln!("cannot write {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        }
        println!(
            "{}: {} seeds in {}",
            target.name,
            seeds.len(),
            tdir.display()
        );
    }
    ExitCode::SUCCESS
}
