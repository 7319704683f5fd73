//! `kala-server import --from URL`: every job of a running Kala (or kala)
//! read over its API and written into this server's store with its id,
//! parents before children. Run it with the server stopped (the embedded
//! store is locked while it runs); jobs whose ids exist are skipped, so it
//! can be run again.

use std::collections::{BTreeMap, HashSet};
use std::process::ExitCode;

use kala_client::Client;
use kala_job::Job;
use kala_store::Batch;

use crate::Serve;
use crate::store::open_store;

/// Jobs per store write.
const CHUNK: usize = 500;

/// `jobs` ordered so that every parent comes before its children (a job
/// whose parent is missing from the source keeps its place at the end).
fn parents_first(jobs: BTreeMap<String, Job>) -> Vec<Job> {
    let mut done: HashSet<String> = HashSet::new();
    let mut out = Vec::with_capacity(jobs.len());
    let mut left: Vec<Job> = jobs.into_values().collect();
    loop {
        let before = left.len();
        let mut next = Vec::new();
        for job in left {
            let ready = job.parent_jobs.iter().flatten().all(|p| done.contains(p));
            if ready {
                done.insert(job.id.clone());
                out.push(job);
            } else {
                next.push(job);
            }
        }
        left = next;
        if left.is_empty() || left.len() == before {
            break;
        }
    }
    out.extend(left);
    out
}

pub async fn import(from: &str, token: Option<&str>, dry_run: bool, args: &Serve) -> ExitCode {
    match run(from, token, dry_run, args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kala-server import: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(from: &str, token: Option<&str>, dry_run: bool, args: &Serve) -> anyhow::Result<()> {
    let mut client = Client::builder(from);
    if let Some(t) = token.filter(|t| !t.is_empty()) {
        client = client.token(t);
    }
    let source = client.build()?;
    let listed = source.list().await?;
    println!("{} jobs at {from}", listed.len());
    let jobs: BTreeMap<String, Job> = listed.into_iter().map(|(id, v)| (id, v.job)).collect();
    let store = open_store(args).await?;
    let existing: HashSet<String> = store.load_all().await?.into_iter().map(|j| j.id).collect();
    let mut new = Vec::new();
    let (mut skipped, mut invalid) = (0usize, 0usize);
    for mut job in parents_first(jobs) {
        if existing.contains(&job.id) {
            println!("skip    {} {:?}: its id exists here", job.id, job.name);
            skipped += 1;
            continue;
        }
        if let Err(e) = job.plan() {
            println!("refuse  {} {:?}: {e}", job.id, job.name);
            invalid += 1;
            continue;
        }
        // The next run is this server's to compute; what the source had
        // done with the schedule is kept in its counters.
        job.next_run_at = None;
        println!(
            "{} {} {:?}{}{}",
            if dry_run { "would import" } else { "import  " },
            job.id,
            job.name,
            if job.disabled { " (disabled)" } else { "" },
            match job.parent_jobs.as_deref() {
                Some(p) if !p.is_empty() => format!(" after {}", p.join(", ")),
                _ => String::new(),
            }
        );
        new.push(job);
    }
    if !dry_run {
        for chunk in new.chunks(CHUNK) {
            store
                .apply(Batch {
                    put: chunk.to_vec(),
                    ..Batch::default()
                })
                .await?;
        }
    }
    store.close().await?;
    println!(
        "{} {} jobs, skipped {skipped} that exist, refused {invalid} that do not parse",
        if dry_run { "would import" } else { "imported" },
        new.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_come_first() {
        let mut jobs = BTreeMap::new();
        let mut child = Job::new("child", "true");
        child.id = "a-child".into();
        child.parent_jobs = Some(vec!["z-parent".into()]);
        let mut grandchild = Job::new("grandchild", "true");
        grandchild.id = "0-grandchild".into();
        grandchild.parent_jobs = Some(vec!["a-child".into()]);
        let mut parent = Job::new("parent", "true");
        parent.id = "z-parent".into();
        let mut orphan = Job::new("orphan", "true");
        orphan.id = "b-orphan".into();
        orphan.parent_jobs = Some(vec!["missing".into()]);
        for j in [child, grandchild, parent, orphan] {
            jobs.insert(j.id.clone(), j);
        }
        let order: Vec<String> = parents_first(jobs).into_iter().map(|j| j.id).collect();
        assert_eq!(order, ["z-parent", "a-child", "0-grandchild", "b-orphan"]);
    }
}
