//! `kala-server check`: verify the embedded store offline.

use std::process::ExitCode;

use kala_store_redb::RedbStore;

/// `kala-server check`.
pub fn check(dir: &std::path::Path) -> ExitCode {
    let file = dir.join("kala.redb");
    if !file.exists() {
        eprintln!("kala-server check: no store at {}", file.display());
        return ExitCode::FAILURE;
    }
    let report = RedbStore::open_dir(dir).and_then(|s| s.verify());
    match report {
        Err(e) => {
            eprintln!("kala-server check: {e}");
            ExitCode::FAILURE
        }
        Ok(r) if r.damaged.is_empty() => {
            println!(
                "{}: {} jobs and {} run records, all intact",
                file.display(),
                r.jobs,
                r.runs
            );
            ExitCode::SUCCESS
        }
        Ok(r) => {
            for d in &r.damaged {
                println!("damaged: {d}");
            }
            println!(
                "{}: {} of {} jobs and {} run records are damaged",
                file.display(),
                r.damaged.len(),
                r.jobs,
                r.runs
            );
            ExitCode::FAILURE
        }
    }
}
