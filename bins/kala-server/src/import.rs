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

/// What an import does with each source job: (id, name, why) for the
/// ones it leaves.
struct Sorted {
    /// To write, parents first, `next_run_at` cleared (this server
    /// computes it; what the source did is kept in the counters).
    new: Vec<Job>,
    /// Their ids exist here.
    skipped: Vec<(String, String, String)>,
    /// Their timing does not parse, or a parent is neither here nor
    /// imported (a store must never hold a child of a missing job).
    refused: Vec<(String, String, String)>,
}

fn sort_out(jobs: BTreeMap<String, Job>, existing: &HashSet<String>) -> Sorted {
    let mut out = Sorted {
        new: Vec::new(),
        skipped: Vec::new(),
        refused: Vec::new(),
    };
    // Ids a child may name as its parent: here already, or imported now.
    let mut present = existing.clone();
    for mut job in parents_first(jobs) {
        let why = if existing.contains(&job.id) {
            out.skipped
                .push((job.id, job.name, "its id exists here".into()));
            continue;
        } else if let Err(e) = job.plan() {
            e.to_string()
        } else if let Some(p) = job.parents().iter().find(|p| !present.contains(*p)) {
            format!("its parent {p} is neither here nor imported")
        } else {
            present.insert(job.id.clone());
            job.next_run_at = None;
            out.new.push(job);
            continue;
        };
        out.refused.push((job.id, job.name, why));
    }
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
    let sorted = sort_out(jobs, &existing);
    for (id, name, why) in &sorted.skipped {
        println!("skip    {id} {name:?}: {why}");
    }
    for (id, name, why) in &sorted.refused {
        println!("refuse  {id} {name:?}: {why}");
    }
    for job in &sorted.new {
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
    }
    let Sorted {
        new,
        skipped,
        refused,
    } = sorted;
    let (skipped, invalid) = (skipped.len(), refused.len());
    if !dry_run {
        // Each imported job has its audit entry, in its batch.
        let actor =
            std::env::var("USER").map_or_else(|_| "import".into(), |u| format!("import:{u}"));
        for chunk in new.chunks(CHUNK) {
            let audit = chunk
                .iter()
                .map(|j| {
                    let at = jiff::Timestamp::now();
                    kala_store::AuditEntry {
                        id: kala_store::audit_id(at),
                        at,
                        actor: actor.clone(),
                        source: kala_publish::redact(from),
                        request_id: String::new(),
                        action: "import".into(),
                        job_id: j.id.clone(),
                        job_name: j.name.clone(),
                        owner: j.owner.clone(),
                        node: String::new(),
                        diff: kala_engine::audit_diff(None, Some(j)),
                    }
                })
                .collect();
            store
                .apply(Batch {
                    put: chunk.to_vec(),
                    audit,
                    ..Batch::default()
                })
                .await?;
        }
    }
    store.close().await?;
    println!(
        "{} {} jobs, skipped {skipped} that exist, refused {invalid} (unparsable, or their parent is missing)",
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
        let order: Vec<String> = parents_first(jobs.clone())
            .into_iter()
            .map(|j| j.id)
            .collect();
        assert_eq!(order, ["z-parent", "a-child", "0-grandchild", "b-orphan"]);

        // The orphan's parent is nowhere: refused, not stored dangling.
        let sorted = sort_out(jobs.clone(), &HashSet::new());
        let new: Vec<&str> = sorted.new.iter().map(|j| j.id.as_str()).collect();
        assert_eq!(new, ["z-parent", "a-child", "0-grandchild"]);
        assert_eq!(sorted.refused.len(), 1);
        assert_eq!(sorted.refused[0].0, "b-orphan");
        assert!(
            sorted.refused[0].2.contains("missing"),
            "{:?}",
            sorted.refused
        );
        // A parent that exists here already lets its child in; the parent
        // itself is skipped.
        let here: HashSet<String> = ["z-parent".to_string(), "missing".to_string()].into();
        let sorted = sort_out(jobs, &here);
        assert_eq!(sorted.skipped.len(), 1, "z-parent is here");
        assert_eq!(
            sorted.new.len(),
            3,
            "child, grandchild, and the orphan whose parent is here"
        );
        assert!(sorted.refused.is_empty());
    }
}
