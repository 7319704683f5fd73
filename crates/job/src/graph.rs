//! The parent/child dependency graph, as pure planning functions.
//!
//! Links are kept both ways: a child lists its parents in `parent_jobs`, a
//! parent lists its children in `dependent_jobs` (FIFO: creation order).
//! Each function returns every job it changes, so the caller can store the
//! whole change in one atomic write — nothing is half-linked.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::{Job, JobError, JobId};

/// What creating a job changes: the job itself plus each parent it is
/// appended to.
#[derive(Debug, Clone, PartialEq)]
pub struct CreatePlan {
    pub job: Job,
    pub updated_parents: Vec<Job>,
}

/// Links a new job to its parents. Unknown or duplicate parents, a job that
/// names itself, or an unknown `on_failure_job` reject the whole creation.
pub fn plan_create(job: Job, lookup: impl Fn(&str) -> Option<Job>) -> Result<CreatePlan, JobError> {
    let mut seen = BTreeSet::new();
    let mut updated_parents = Vec::new();
    for pid in job.parents() {
        if pid == &job.id {
            return Err(JobError::new(
                "parent_jobs",
                "a job cannot be its own parent",
            ));
        }
        if !seen.insert(pid.clone()) {
            return Err(JobError::new(
                "parent_jobs",
                format!("job {pid} is listed twice"),
            ));
        }
        let mut parent = lookup(pid)
            .ok_or_else(|| JobError::new("parent_jobs", format!("job {pid} does not exist")))?;
        parent
            .dependent_jobs
            .get_or_insert_with(Vec::new)
            .push(job.id.clone());
        updated_parents.push(parent);
    }
    if !job.on_failure_job.is_empty()
        && job.on_failure_job != job.id
        && lookup(&job.on_failure_job).is_none()
    {
        return Err(JobError::new(
            "on_failure_job",
            format!("job {} does not exist", job.on_failure_job),
        ));
    }
    Ok(CreatePlan {
        job,
        updated_parents,
    })
}

/// What deleting a job changes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DeletePlan {
    /// The job and every descendant left without a parent, in cascade order.
    pub deleted: Vec<JobId>,
    /// Surviving jobs whose links to deleted jobs were removed.
    pub updated: Vec<Job>,
}

/// Deletes `id`: it is unlinked from its parents; each child that has no
/// other surviving parent is deleted too (recursively); a child with
/// another parent survives with that parent only. `None` if `id` is unknown.
pub fn plan_delete(id: &str, lookup: impl Fn(&str) -> Option<Job>) -> Option<DeletePlan> {
    let root = lookup(id)?;
    let mut jobs: BTreeMap<JobId, Job> = BTreeMap::new();
    let mut deleted: Vec<JobId> = vec![root.id.clone()];
    let mut gone: BTreeSet<JobId> = BTreeSet::from([root.id.clone()]);
    let mut queue = VecDeque::from([root.clone()]);
    jobs.insert(root.id.clone(), root);
    while let Some(job) = queue.pop_front() {
        for cid in job.children() {
            if gone.contains(cid) {
                continue;
            }
            let Some(child) = jobs.get(cid).cloned().or_else(|| lookup(cid)) else {
                continue;
            };
            jobs.insert(cid.clone(), child.clone());
            if child.parents().iter().all(|p| gone.contains(p)) {
                gone.insert(cid.clone());
                deleted.push(cid.clone());
                queue.push_back(child);
            }
        }
    }
    // Survivors that point at a deleted job: the parents and children of
    // every deleted job.
    let mut touched: BTreeSet<JobId> = BTreeSet::new();
    for d in &deleted {
        if let Some(j) = jobs.get(d) {
            touched.extend(
                j.parents()
                    .iter()
                    .chain(j.children())
                    .filter(|x| !gone.contains(*x))
                    .cloned(),
            );
        }
    }
    let mut updated = Vec::new();
    for tid in touched {
        let Some(mut t) = jobs.get(&tid).cloned().or_else(|| lookup(&tid)) else {
            continue;
        };
        if let Some(c) = t.dependent_jobs.as_mut() {
            c.retain(|x| !gone.contains(x));
        }
        if let Some(p) = t.parent_jobs.as_mut() {
            p.retain(|x| !gone.contains(x));
        }
        updated.push(t);
    }
    Some(DeletePlan { deleted, updated })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct World(BTreeMap<JobId, Job>);

    impl World {
        fn new() -> World {
            World(BTreeMap::new())
        }
        fn get(&self, id: &str) -> Option<Job> {
            self.0.get(id).cloned()
        }
        fn add(&mut self, name: &str, parents: &[&str]) -> JobId {
            let mut j = Job::new(name, "true");
            j.id = name.to_string();
            if !parents.is_empty() {
                j.parent_jobs = Some(parents.iter().map(|p| p.to_string()).collect());
            }
            let plan = plan_create(j, |id| self.get(id)).unwrap();
            for p in plan.updated_parents {
                self.0.insert(p.id.clone(), p);
            }
            self.0.insert(plan.job.id.clone(), plan.job);
            name.to_string()
        }
        fn delete(&mut self, id: &str) -> DeletePlan {
            let plan = plan_delete(id, |x| self.get(x)).unwrap();
            for d in &plan.deleted {
                self.0.remove(d);
            }
            for u in &plan.updated {
                self.0.insert(u.id.clone(), u.clone());
            }
            plan
        }
    }

    #[test]
    fn children_are_appended_fifo_both_ways() {
        let mut w = World::new();
        w.add("p", &[]);
        w.add("a", &["p"]);
        w.add("b", &["p"]);
        assert_eq!(w.get("p").unwrap().children(), ["a", "b"]);
        assert_eq!(w.get("b").unwrap().parents(), ["p"]);
    }

    #[test]
    fn unknown_duplicate_and_self_parents_are_rejected_without_changes() {
        let mut w = World::new();
        w.add("p", &[]);
        let mut j = Job::new("x", "true");
        j.parent_jobs = Some(vec!["p".into(), "nope".into()]);
        let e = plan_create(j.clone(), |id| w.get(id)).unwrap_err();
        assert_eq!(e.to_string(), "parent_jobs: job nope does not exist");
        j.parent_jobs = Some(vec!["p".into(), "p".into()]);
        assert!(
            plan_create(j.clone(), |id| w.get(id))
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
        j.parent_jobs = Some(vec![j.id.clone()]);
        assert!(plan_create(j, |id| w.get(id)).is_err());
        assert_eq!(w.get("p").unwrap().dependent_jobs, None);
        let mut k = Job::new("k", "true");
        k.on_failure_job = "ghost".into();
        assert_eq!(
            plan_create(k, |id| w.get(id)).unwrap_err().field,
            "on_failure_job"
        );
    }

    #[test]
    fn deleting_a_child_unlinks_it() {
        let mut w = World::new();
        w.add("p", &[]);
        w.add("c", &["p"]);
        let plan = w.delete("c");
        assert_eq!(plan.deleted, ["c"]);
        assert_eq!(w.get("p").unwrap().dependent_jobs, Some(vec![]));
    }

    #[test]
    fn deleting_a_parent_cascades_to_only_children() {
        let mut w = World::new();
        w.add("p", &[]);
        w.add("backup", &[]);
        w.add("only", &["p"]);
        w.add("grand", &["only"]);
        w.add("shared", &["p", "backup"]);
        let plan = w.delete("p");
        assert_eq!(plan.deleted, ["p", "only", "grand"]);
        assert_eq!(w.get("shared").unwrap().parents(), ["backup"]);
        assert_eq!(w.get("backup").unwrap().children(), ["shared"]);
        assert_eq!(w.0.len(), 2);
    }

    #[test]
    fn a_diamond_is_deleted_once() {
        let mut w = World::new();
        w.add("a", &[]);
        w.add("b", &["a"]);
        w.add("c", &["a"]);
        w.add("d", &["b", "c"]);
        let plan = w.delete("a");
        assert_eq!(plan.deleted, ["a", "b", "c", "d"]);
        assert!(plan.updated.is_empty());
        assert!(w.0.is_empty());
    }

    #[test]
    fn unknown_id_has_no_plan() {
        let w = World::new();
        assert!(plan_delete("nope", |x| w.get(x)).is_none());
    }
}
