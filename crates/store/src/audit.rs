//! The audit log: one [`AuditEntry`] per change (who, when, from where,
//! what, and the job before and after as a diff), written in the same
//! batch as the change itself ([`crate::Batch::audit`]), so a change and
//! its entry are stored together or not at all. Entries are never
//! changed; [`crate::JobStore::prune_audit`] drops old ones.
//!
//! Owns: [`AuditEntry`], its id ([`audit_id`]: ordered by time, so every
//! backend keeps and pages entries by id), and the in-memory paging
//! helper backends that read everything use.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// One change, as the audit log keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Unique and in time order as text ([`audit_id`]).
    pub id: String,
    pub at: Timestamp,
    /// Who: a token's name, `jwt:<subject>`, `anonymous` (no auth), or
    /// what an embedder names.
    pub actor: String,
    /// From where: the client's address, or what an embedder names.
    pub source: String,
    /// The request's id (`x-request-id`), empty outside HTTP.
    #[serde(default)]
    pub request_id: String,
    /// `create`, `delete`, `delete_all`, `enable`, `disable`, `start`,
    /// `notify`, `import`, `tokens_reloaded`, `refused`.
    pub action: String,
    /// The job changed; empty for server-wide actions.
    #[serde(default)]
    pub job_id: String,
    #[serde(default)]
    pub job_name: String,
    /// The job's owner (owner-scoped readers see their owners' entries).
    #[serde(default)]
    pub owner: String,
    /// The instance that made the change.
    #[serde(default)]
    pub node: String,
    /// What changed: `{"field": {"before": …, "after": …}}` over the job's
    /// JSON (secrets masked), or details of the action.
    #[serde(default)]
    pub diff: AuditDiff,
}

/// An entry's diff (or an action's details): a JSON object kept as its
/// text. An entry is written once per change and read rarely, so it is
/// never a tree in memory: the engine writes a create's diff straight
/// from the job's JSON, the store writes the text as it is, and a read
/// hands it to the client unparsed.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AuditDiff(Box<serde_json::value::RawValue>);

impl AuditDiff {
    /// The diff of `value` (a JSON object).
    pub fn from_value(value: &serde_json::Value) -> AuditDiff {
        serde_json::value::to_raw_value(value).map_or_else(|_| AuditDiff::default(), AuditDiff)
    }

    /// The diff whose JSON text is `json`; `None` if it is not JSON.
    pub fn from_json(json: String) -> Option<AuditDiff> {
        serde_json::value::RawValue::from_string(json)
            .ok()
            .map(AuditDiff)
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }

    /// The diff as a tree (for checks and filters; `Null` never happens
    /// for a diff this type made).
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::from_str(self.0.get()).unwrap_or(serde_json::Value::Null)
    }
}

impl Default for AuditDiff {
    /// `{}`.
    fn default() -> Self {
        AuditDiff(serde_json::value::RawValue::from_string("{}".into()).expect("{} is JSON"))
    }
}

impl PartialEq for AuditDiff {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl std::fmt::Debug for AuditDiff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An entry id: the time in nanoseconds since 1970 (20 digits, so text
/// order is time order), then 8 hex digits of this process's random seed
/// and 8 of a counter: unique, and in the order they were made among the
/// entries of one process at the same nanosecond (a fake clock's, or one
/// batch's); no system call per entry.
pub fn audit_id(at: Timestamp) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let ns = at.as_nanosecond().max(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let Ok(ns) = u64::try_from(ns) else {
        return format!("{ns:020}-{:08x}{n:08x}", seed() as u32);
    };
    audit_id_of(ns, (u64::from(seed() as u32) << 32) | u64::from(n))
}

/// The id of time `ns` and `tail` (seed and counter): 20 decimal digits,
/// a dash, 16 lowercase hex digits; in the order of `(ns, tail)`, for
/// every pair. Written by hand: `format!` with padding cost a create
/// ~0.3 µs.
pub fn audit_id_of(ns: u64, tail: u64) -> String {
    let mut id = [b'0'; 37];
    id[20] = b'-';
    let mut v = ns;
    for d in id[..20].iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
    for (i, d) in id[21..].iter_mut().enumerate() {
        *d = b"0123456789abcdef"[((tail >> (60 - 4 * i)) & 0xf) as usize];
    }
    id.iter().map(|&b| b as char).collect()
}

/// The time and tail of an id of [`audit_id_of`]'s form (the inverse);
/// `None` for any other text.
pub fn audit_id_parts(id: &str) -> Option<(u64, u64)> {
    let (ns, tail) = id.split_once('-')?;
    if ns.len() != 20
        || tail.len() != 16
        || !ns.bytes().all(|c| c.is_ascii_digit())
        || !tail.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    Some((ns.parse().ok()?, u64::from_str_radix(tail, 16).ok()?))
}

fn seed() -> u64 {
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SEED.get_or_init(|| uuid::Uuid::new_v4().as_u64_pair().0)
}

/// A number no other call of this process gets (for 2^64 calls) and that
/// another process is unlikely to get: splitmix64 of a random seed plus
/// a counter (request ids).
pub fn unique_u64() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let mut z = seed().wrapping_add(
        N.fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15),
    );
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The page [`crate::JobStore::audit`] answers, from every entry of a
/// backend that reads them all: ids before `before`, newest first.
pub fn audit_page(mut all: Vec<AuditEntry>, before: Option<&str>, limit: usize) -> Vec<AuditEntry> {
    if let Some(b) = before {
        all.retain(|e| e.id.as_str() < b);
    }
    all.sort_unstable_by(|a, b| b.id.cmp(&a.id));
    all.truncate(limit);
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_within_a_nanosecond() {
        let at = Timestamp::from_second(1_900_000_000).unwrap();
        let ids: Vec<String> = (0..100_000).map(|_| audit_id(at)).collect();
        let set: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(set.len(), 100_000);
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "made in order, sorted in order"
        );
    }

    #[test]
    fn ids_sort_in_time_order() {
        let a = audit_id(Timestamp::from_second(1).unwrap());
        let b = audit_id(Timestamp::from_second(1_000_000_000).unwrap());
        let c = audit_id(Timestamp::from_second(4_000_000_000).unwrap());
        assert!(a < b && b < c, "{a} {b} {c}");
        assert_eq!(a.len(), b.len());
    }

    /// The hand-written digits are `format!`'s.
    #[test]
    fn ids_have_the_documented_form() {
        for ns in [0i128, 1, 1_796_686_539_794_905_217, i128::from(u64::MAX)] {
            let id = audit_id(Timestamp::from_nanosecond(ns).unwrap());
            let (time, tail) = id.split_once('-').expect("a dash");
            assert_eq!(time, format!("{ns:020}"));
            assert_eq!(tail.len(), 16);
            assert_eq!(&tail[..8], format!("{:08x}", seed() as u32));
            assert!(u32::from_str_radix(&tail[8..], 16).is_ok(), "{id}");
            let parts = audit_id_parts(&id).expect("parts");
            assert_eq!(audit_id_of(parts.0, parts.1), id, "parts and id agree");
        }
        for (ns, tail) in [(0, 0), (u64::MAX, u64::MAX), (12, 0xfc98_4b04_0000_0000)] {
            assert_eq!(
                audit_id_of(ns, tail),
                format!("{ns:020}-{tail:016x}"),
                "the form for every pair"
            );
        }
    }
}
