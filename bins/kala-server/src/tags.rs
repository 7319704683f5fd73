//! `--tag key=value` and `--role`: where this instance stands for
//! `run_on` placement. Tags are checked before anything
//! starts.

/// `--tag key=value` flags as a map: keys of 1–63 letters, digits, `_`,
/// `.` or `-`; values of at most 255 characters, none a space or a
/// control character; each key once.
pub fn parse(flags: &[String]) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let mut out = std::collections::BTreeMap::new();
    for flag in flags.iter().filter(|f| !f.trim().is_empty()) {
        let Some((key, value)) = flag.split_once('=') else {
            anyhow::bail!("--tag {flag:?}: expected key=value (e.g. --tag role=etl)");
        };
        let (key, value) = (key.trim(), value.trim());
        if key.is_empty()
            || key.len() > 63
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        {
            anyhow::bail!("--tag {flag:?}: the key must be 1-63 letters, digits, '_', '.' or '-'");
        }
        if value.chars().count() > 255 || value.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            anyhow::bail!(
                "--tag {flag:?}: the value must be at most 255 characters, without spaces or control characters"
            );
        }
        if out.insert(key.to_string(), value.to_string()).is_some() {
            anyhow::bail!("--tag {key}: given twice");
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_parse_and_bad_ones_say_why() {
        let flags = [
            "role=etl".to_string(),
            " zone = eu-1 ".to_string(),
            String::new(),
        ];
        let got = parse(&flags).expect("valid");
        assert_eq!(got.get("role").map(String::as_str), Some("etl"));
        assert_eq!(got.get("zone").map(String::as_str), Some("eu-1"));
        for (bad, why) in [
            ("role", "expected key=value"),
            ("=x", "the key must be"),
            ("a/b=x", "the key must be"),
            ("k=a b", "without spaces"),
        ] {
            let e = parse(&[bad.to_string()]).expect_err(bad).to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
        let twice = ["k=1".to_string(), "k=2".to_string()];
        assert!(parse(&twice).is_err());
    }
}

/// What an instance does in a cluster (`--role`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Schedules (holds partitions) and runs jobs.
    Both,
    /// Runs only the runs dispatched to it (`run_on`); schedules nothing.
    Worker,
    /// Schedules and dispatches every run to instances that run jobs.
    Scheduler,
}

/// `--role`, refused where no other instance can share the work.
pub fn node_role(
    role: Role,
    jobdb: &str,
    no_persist: bool,
) -> anyhow::Result<kala_store::NodeRole> {
    if role != Role::Both && (jobdb == "boltdb" || no_persist) {
        anyhow::bail!(
            "--role {}: needs a database shared with other instances (--jobdb postgres, mysql, redis, mongo or consul); alone, an instance schedules and runs everything",
            if role == Role::Worker {
                "worker"
            } else {
                "scheduler"
            }
        );
    }
    Ok(match role {
        Role::Both => kala_store::NodeRole::Both,
        Role::Worker => kala_store::NodeRole::Worker,
        Role::Scheduler => kala_store::NodeRole::Scheduler,
    })
}
