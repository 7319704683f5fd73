//! The fault suite's oracle (tests/faults.rs and `kala-bench chaos`):
//! judges a cluster from its jobs' own side effects and its records.
//!
//! Each run's command appends one line to a log:
//! `KALA_JOB_ID KALA_SCHEDULED_AT KALA_NODE KALA_RUN_ID unix-seconds`
//! ([`LOG_LINE`]); [`judge`] holds those executions against the run
//! records and counters read back through the API.

use std::collections::{BTreeSet, HashMap};

/// The shell a job's command runs to log its execution; the time is read
/// without the process's `LD_PRELOAD`, so an instance whose clock is
/// skewed (libfaketime) still logs the true time.
pub const LOG_LINE: &str = "echo \"$KALA_JOB_ID $KALA_SCHEDULED_AT $KALA_NODE $KALA_RUN_ID $(env -u LD_PRELOAD date +%s.%N)\"";

/// The command a job runs to log its execution to `log`.
pub fn logging_command(log: &std::path::Path) -> String {
    format!("sh -c '{LOG_LINE} >> {}'", log.display())
}

/// One run as its command saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Execution {
    pub job: String,
    /// Empty for one-offs and manual runs.
    pub point: String,
    pub node: String,
    pub run_id: String,
    /// Unix seconds when the command ran.
    pub at: f64,
}

/// The executions in a log's text.
pub fn executions(text: &str) -> Vec<Execution> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            match f.as_slice() {
                [job, point, node, run_id, at] => Some(Execution {
                    job: job.to_string(),
                    point: point.to_string(),
                    node: node.to_string(),
                    run_id: run_id.to_string(),
                    at: at.parse().ok()?,
                }),
                _ => None,
            }
        })
        .collect()
}

/// A run record as the oracle needs it.
#[derive(Debug, Clone)]
pub struct Record {
    pub run_id: Option<String>,
    pub node: Option<String>,
    /// The schedule point (RFC 3339), for scheduled runs.
    pub point: Option<String>,
    /// `succeeded`, `failed`, `skipped`, `interrupted`.
    pub outcome: String,
}

impl From<&kala_job::RunRecord> for Record {
    fn from(r: &kala_job::RunRecord) -> Record {
        Record {
            run_id: r.run_id.clone(),
            node: r.node.clone(),
            point: r.scheduled_at.map(|p| p.to_string()),
            // The outcome's wire name: `succeeded`, `failed`, …
            outcome: serde_json::to_value(r.outcome)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
        }
    }
}

/// The partitions each instance holds, from a `GET /api/v1/cluster/`
/// answer: instance name → partitions.
pub fn owners(cluster: &serde_json::Value) -> HashMap<String, BTreeSet<u32>> {
    cluster["nodes"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|n| {
            let parts = n["partitions"]
                .as_array()
                .map(|p| {
                    p.iter()
                        .filter_map(|x| x.as_u64())
                        .filter_map(|x| u32::try_from(x).ok())
                        .collect()
                })
                .unwrap_or_default();
            (n["name"].as_str().unwrap_or_default().to_string(), parts)
        })
        .collect()
}

/// A job as read back at the end.
#[derive(Debug, Clone)]
pub struct JobState {
    pub id: String,
    /// Repeats every second (its points are checked one by one).
    pub every_second: bool,
    /// The records (settled: the API's runs route).
    pub records: Vec<Record>,
    pub success_count: u64,
    pub error_count: u64,
    /// Points up to this time (unix s) must have a run or a record.
    pub check_points_until: f64,
}

/// What the oracle found wrong; empty everywhere is a pass.
#[derive(Debug, Default)]
pub struct Verdict {
    /// (job, point or "once") run more than once, with the nodes.
    pub duplicates: Vec<(String, String, Vec<String>)>,
    /// (job, point) with neither a run nor a record.
    pub untraced: Vec<(String, String)>,
    /// Runs after their job's delete or disable answered: (job, run id,
    /// seconds after).
    pub after_stop: Vec<(String, String, f64)>,
    /// Executions whose run has no record, or whose record names another
    /// node or an outcome the run did not have: (job, run id, why).
    pub bad_records: Vec<(String, String, String)>,
    /// (job, what the counters say, what the records say).
    pub counter_mismatches: Vec<(String, String, String)>,
    pub executions: usize,
    pub points_checked: usize,
}

impl Verdict {
    pub fn passed(&self) -> bool {
        self.duplicates.is_empty()
            && self.untraced.is_empty()
            && self.after_stop.is_empty()
            && self.bad_records.is_empty()
            && self.counter_mismatches.is_empty()
    }
}

/// What the oracle is given besides the executions. A stop's window
/// (its `from` to its `until`) also excuses the job's points in it from
/// having a trace.
pub struct Facts<'a> {
    pub jobs: &'a [JobState],
    /// One-off jobs: each runs exactly once.
    pub one_offs: &'a [String],
    /// (job, unix s when its delete or disable answered, until when it
    /// stayed stopped: `f64::INFINITY` for a delete).
    pub stops: &'a [(String, f64, f64)],
    /// How long after a stop answered a run already starting may still
    /// log its line.
    pub stop_grace: f64,
    /// Nodes that were SIGKILLed (their runs may end `interrupted`).
    pub killed: &'a BTreeSet<String>,
}

/// Judges the executions against the facts.
pub fn judge(runs: &[Execution], f: &Facts<'_>) -> Verdict {
    let mut v = Verdict {
        executions: runs.len(),
        ..Verdict::default()
    };
    let mut by_point: HashMap<(&str, &str), Vec<&Execution>> = HashMap::new();
    for r in runs {
        let key = if r.point.is_empty() {
            "once"
        } else {
            r.point.as_str()
        };
        by_point.entry((r.job.as_str(), key)).or_default().push(r);
    }
    for ((job, point), list) in &by_point {
        let scheduled = *point != "once";
        if list.len() > 1 && (scheduled || f.one_offs.iter().any(|o| o == job)) {
            v.duplicates.push((
                job.to_string(),
                point.to_string(),
                list.iter().map(|e| e.node.clone()).collect(),
            ));
        }
    }
    for (job, from, until) in f.stops {
        for r in runs.iter().filter(|r| &r.job == job) {
            if r.at > from + f.stop_grace && r.at < *until {
                v.after_stop
                    .push((job.clone(), r.run_id.clone(), r.at - from));
            }
        }
    }
    for j in f.jobs {
        let mine: Vec<&Execution> = runs.iter().filter(|r| r.job == j.id).collect();
        let by_run: HashMap<&str, &Record> = j
            .records
            .iter()
            .filter_map(|r| Some((r.run_id.as_deref()?, r)))
            .collect();
        for e in &mine {
            match by_run.get(e.run_id.as_str()) {
                None => v
                    .bad_records
                    .push((j.id.clone(), e.run_id.clone(), "no record".into())),
                Some(r) if r.node.as_deref() != Some(e.node.as_str()) => v.bad_records.push((
                    j.id.clone(),
                    e.run_id.clone(),
                    format!("recorded on {:?}, ran on {}", r.node, e.node),
                )),
                Some(r)
                    if r.outcome != "succeeded"
                        && !(r.outcome == "interrupted" && f.killed.contains(&e.node)) =>
                {
                    v.bad_records.push((
                        j.id.clone(),
                        e.run_id.clone(),
                        format!("recorded {} though it ran on {}", r.outcome, e.node),
                    ))
                }
                Some(_) => {}
            }
        }
        let count = |o: &str| j.records.iter().filter(|r| r.outcome == o).count() as u64;
        let records = (count("succeeded"), count("failed") + count("interrupted"));
        if (j.success_count, j.error_count) != records {
            v.counter_mismatches.push((
                j.id.clone(),
                format!("success {} error {}", j.success_count, j.error_count),
                format!("success {} error {}", records.0, records.1),
            ));
        }
        if !j.every_second {
            continue;
        }
        let recorded: BTreeSet<&str> = j
            .records
            .iter()
            .filter_map(|r| r.point.as_deref())
            .collect();
        let points: BTreeSet<i64> = mine
            .iter()
            .filter(|e| !e.point.is_empty())
            .filter_map(|e| point_secs(&e.point))
            .map(|p| p.round() as i64)
            .collect();
        let recorded_s: BTreeSet<i64> = recorded
            .iter()
            .filter_map(|p| point_secs(p))
            .map(|p| p.round() as i64)
            .collect();
        let Some(first) = points.iter().chain(recorded_s.iter()).min().copied() else {
            continue;
        };
        // Points that fell while the job was stopped (a disable until its
        // enable, whose catch-up runs only the latest) are not expected,
        // nor one due in the second before the stop answered.
        let stopped = |p: i64| {
            f.stops.iter().any(|(id, from, until)| {
                id == &j.id && (p as f64) >= from - 1.0 && (p as f64) <= *until
            })
        };
        let mut p = first;
        while (p as f64) < j.check_points_until {
            if stopped(p) {
                p += 1;
                continue;
            }
            v.points_checked += 1;
            if !points.contains(&p) && !recorded_s.contains(&p) {
                v.untraced.push((j.id.clone(), format!("{p}")));
            }
            p += 1;
        }
    }
    v
}

/// Unix seconds of an RFC 3339 UTC time `YYYY-MM-DDTHH:MM:SS[.f]Z`.
pub fn point_secs(p: &str) -> Option<f64> {
    let p = p.strip_suffix('Z')?;
    let (date, time) = p.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':');
    let (h, mi) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let s: f64 = t.next()?.parse().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + mi * 60) as f64 + s)
}

/// Percentile `q` (0..=1) of sorted values.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let k = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[k.min(sorted.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(job: &str, point: &str, node: &str, run: &str, at: f64) -> Execution {
        Execution {
            job: job.into(),
            point: point.into(),
            node: node.into(),
            run_id: run.into(),
            at,
        }
    }

    fn rec(run: &str, node: &str, point: &str, outcome: &str) -> Record {
        Record {
            run_id: Some(run.into()),
            node: Some(node.into()),
            point: Some(point.into()),
            outcome: outcome.into(),
        }
    }

    #[test]
    fn points_parse_as_unix_seconds() {
        assert_eq!(point_secs("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(point_secs("2026-12-07T01:02:03Z"), Some(1_796_605_323.0));
        assert_eq!(point_secs("2000-02-29T12:00:00.5Z"), Some(951_825_600.5));
        assert_eq!(point_secs("not a time"), None);
    }

    #[test]
    fn the_oracle_finds_each_kind_of_fault() {
        let p0 = "2026-12-07T01:02:03Z";
        let p1 = "2026-12-07T01:02:04Z";
        let p2 = "2026-12-07T01:02:05Z";
        let t = point_secs(p0).unwrap();
        let runs = vec![
            exec("j", p0, "n0", "r0", t),
            exec("j", p0, "n1", "r1", t + 0.1), // twice
            exec("j", p2, "n1", "r2", t + 2.0), // p1 neither ran nor recorded
            exec("k", "", "n0", "r3", t + 9.0), // after its delete
            exec("j", p2, "n2", "r4", t + 2.0), // no record, and twice
        ];
        let jobs = vec![JobState {
            id: "j".into(),
            every_second: true,
            records: vec![
                rec("r0", "n0", p0, "succeeded"),
                rec("r1", "n0", p0, "succeeded"),   // wrong node
                rec("r2", "n1", p2, "interrupted"), // n1 was not killed
            ],
            success_count: 3,
            error_count: 0,
            check_points_until: t + 3.0,
        }];
        let killed = BTreeSet::new();
        let v = judge(
            &runs,
            &Facts {
                jobs: &jobs,
                one_offs: &[],
                stops: &[("k".into(), t + 5.0, f64::INFINITY)],
                stop_grace: 0.5,
                killed: &killed,
            },
        );
        assert_eq!(v.duplicates.len(), 2, "{v:?}");
        assert_eq!(v.untraced, [("j".to_string(), format!("{}", t as i64 + 1))]);
        assert_eq!(v.after_stop.len(), 1);
        assert_eq!(v.bad_records.len(), 3, "{v:?}");
        assert_eq!(v.counter_mismatches.len(), 1, "{v:?}");
        assert!(!v.passed());
        let _ = p1;
    }

    #[test]
    fn owners_reads_the_cluster_route() {
        let v = serde_json::json!({"nodes": [
            {"name": "n0", "partitions": [0, 1, 63]},
            {"name": "n1", "partitions": []},
        ]});
        let o = owners(&v);
        assert_eq!(o["n0"], BTreeSet::from([0, 1, 63]));
        assert!(o["n1"].is_empty());
        assert!(owners(&serde_json::json!({})).is_empty());
    }
}
