//! An audit entry as the embedded store keeps it: its key, a `u128` made
//! from its id, and its record, packed.
//!
//! Why not the id as text and the entry as framed JSON, as in format 3:
//! the log is appended to in every commit that changes a job, and each
//! commit rewrites the path from the log's root to its last leaf
//! (copy-on-write). A 16-byte key instead of a 37-byte one fits ~60 %
//! more children in a branch page, and a packed record (no field names,
//! no id, the time as 12 bytes) is ~35 % smaller than the JSON, so the
//! tree is a level shallower for the same entries and each commit writes
//! a page less.
//!
//! Owns: [`key`], [`id`], [`bound`], [`encode`], [`decode`]. Must not:
//! touch tables.

use jiff::Timestamp;
use kala_store::{AuditDiff, AuditEntry, Result, StoreError, audit_id_of, audit_id_parts};

/// The version byte of a packed entry.
const PACKED: u8 = 4;

/// The key of the entry whose id is `id`, if `id` has the form
/// [`kala_store::audit_id`] gives ([`kala_store::audit_id_parts`]). Keys
/// sort as the ids do.
pub(crate) fn key(id: &str) -> Option<u128> {
    let (ns, tail) = audit_id_parts(id)?;
    Some((u128::from(ns) << 64) | u128::from(tail))
}

/// The id of key `k` (the inverse of [`key`]).
pub(crate) fn id(k: u128) -> String {
    audit_id_of((k >> 64) as u64, k as u64)
}

/// The first key whose id sorts at or after `s`, `None` when every id
/// sorts before it: the keys before it are exactly the ids before `s`,
/// whatever text `s` is (a client's cursor). [`id`] keeps order, so a
/// binary search over keys finds it.
pub(crate) fn bound(s: &str) -> Option<u128> {
    if let Some(k) = key(s) {
        return Some(k);
    }
    if id(u128::MAX).as_str() < s {
        return None;
    }
    let (mut lo, mut hi) = (0u128, u128::MAX);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if id(mid).as_str() < s {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Some(lo)
}

/// The key of the first entry at or after `at` (entries before it are
/// older than `at`).
pub(crate) fn time_bound(at: Timestamp) -> u128 {
    let ns = u64::try_from(at.as_nanosecond().max(0)).unwrap_or(u64::MAX);
    (ns as u128) << 64
}

/// `[4][CRC-32 of the rest, LE][seconds i64 LE][ns i32 LE]` then actor,
/// source, request id, action, job id, job name, owner, node and the
/// diff's JSON, each as its length (LEB128) and its bytes. The id is the
/// key.
pub(crate) fn encode(e: &AuditEntry) -> Vec<u8> {
    let fields = [
        e.actor.as_str(),
        e.source.as_str(),
        e.request_id.as_str(),
        e.action.as_str(),
        e.job_id.as_str(),
        e.job_name.as_str(),
        e.owner.as_str(),
        e.node.as_str(),
        e.diff.as_str(),
    ];
    let len: usize = fields.iter().map(|f| f.len() + 2).sum();
    let mut out = Vec::with_capacity(17 + len);
    out.extend_from_slice(&[PACKED, 0, 0, 0, 0]);
    out.extend_from_slice(&e.at.as_second().to_le_bytes());
    out.extend_from_slice(&e.at.subsec_nanosecond().to_le_bytes());
    for f in fields {
        let mut n = f.len();
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
        out.extend_from_slice(f.as_bytes());
    }
    let crc = crc32fast::hash(&out[5..]).to_le_bytes();
    out[1..5].copy_from_slice(&crc);
    out
}

/// The entry of key `k`, checked; damage is [`StoreError::Corrupt`]
/// naming its id.
pub(crate) fn decode(k: u128, bytes: &[u8]) -> Result<AuditEntry> {
    let corrupt = |reason: &str| StoreError::Corrupt {
        key: format!("audit/{}", id(k)),
        reason: reason.to_string(),
    };
    let [PACKED, a, b, c, d, rest @ ..] = bytes else {
        return Err(corrupt("unknown record format"));
    };
    if crc32fast::hash(rest) != u32::from_le_bytes([*a, *b, *c, *d]) {
        return Err(corrupt("checksum mismatch: the stored value was damaged"));
    }
    let mut r = Reader(rest);
    let secs = i64::from_le_bytes(r.array().ok_or_else(|| corrupt("truncated"))?);
    let nanos = i32::from_le_bytes(r.array().ok_or_else(|| corrupt("truncated"))?);
    let at = Timestamp::new(secs, nanos).map_err(|_| corrupt("time out of range"))?;
    let mut next = || -> Result<String> {
        let s = r.field().ok_or_else(|| corrupt("truncated"))?;
        std::str::from_utf8(s)
            .map(str::to_string)
            .map_err(|_| corrupt("a field is not UTF-8"))
    };
    let (actor, source, request_id, action) = (next()?, next()?, next()?, next()?);
    let (job_id, job_name, owner, node) = (next()?, next()?, next()?, next()?);
    let diff = AuditDiff::from_json(next()?).ok_or_else(|| corrupt("the diff is not JSON"))?;
    Ok(AuditEntry {
        id: id(k),
        at,
        actor,
        source,
        request_id,
        action,
        job_id,
        job_name,
        owner,
        node,
        diff,
    })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }

    fn field(&mut self) -> Option<&'a [u8]> {
        let mut n = 0usize;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.0.split_first()?;
            self.0 = rest;
            n |= usize::from(byte & 0x7f).checked_shl(shift)?;
            if byte & 0x80 == 0 {
                let (f, rest) = (self.0.get(..n)?, self.0.get(n..)?);
                self.0 = rest;
                return Some(f);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kala_store::audit_id;

    fn entry() -> AuditEntry {
        let at: Timestamp = "2026-12-07T23:35:39.794905217Z".parse().expect("time");
        AuditEntry {
            id: audit_id(at),
            at,
            actor: "ci".into(),
            source: "127.0.0.1:51068".into(),
            request_id: "33bdc65ef0b8ee88".into(),
            action: "create".into(),
            job_id: "14f11314-9c69-4b16-a55a-bf4271480378".into(),
            job_name: "nightly ✓".into(),
            owner: "team-a".into(),
            node: "vm:8000".into(),
            diff: AuditDiff::from_json(r#"{"name":{"after":"nightly ✓"}}"#.into()).expect("json"),
        }
    }

    #[test]
    fn an_entry_comes_back_as_it_went_in_and_smaller_than_its_json() {
        let e = entry();
        let k = key(&e.id).expect("an audit id is a key");
        assert_eq!(id(k), e.id);
        let bytes = encode(&e);
        let back = decode(k, &bytes).expect("decode");
        assert_eq!(
            serde_json::to_value(&back).expect("json"),
            serde_json::to_value(&e).expect("json")
        );
        let json = serde_json::to_vec(&e).expect("json");
        assert!(
            bytes.len() * 10 < json.len() * 7,
            "{} vs {}",
            bytes.len(),
            json.len()
        );
    }

    #[test]
    fn damage_is_named_never_a_panic() {
        let e = entry();
        let k = key(&e.id).expect("key");
        let bytes = encode(&e);
        for cut in 0..bytes.len() {
            assert!(decode(k, &bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(matches!(
            decode(k, &flipped),
            Err(StoreError::Corrupt { key, .. }) if key == format!("audit/{}", e.id)
        ));
        // A record whose lengths run past its end, with a right checksum.
        let mut long = vec![PACKED, 0, 0, 0, 0];
        long.extend_from_slice(&[0; 12]);
        long.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        let crc = crc32fast::hash(&long[5..]).to_le_bytes();
        long[1..5].copy_from_slice(&crc);
        assert!(decode(k, &long).is_err());
    }

    #[test]
    fn keys_keep_the_order_of_ids_and_any_cursor_has_a_bound() {
        let ids = [
            "00000000000000000000-0000000000000000",
            "01796686539794905217-00000000ffffffff",
            "01796686539794905217-fc984b0400000000",
            "01796686539794905218-0000000000000000",
            "18446744073709551615-ffffffffffffffff",
        ];
        let keys: Vec<u128> = ids.iter().map(|i| key(i).expect("key")).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        for bad in [
            "",
            "x",
            "0179668653979490521-fc984b0400000000",
            "01796686539794905217_fc984b0400000000",
            "01796686539794905217-FC984B0400000000",
            "99999999999999999999-0000000000000000",
        ] {
            assert_eq!(key(bad), None, "{bad}");
        }
        // For any text, the keys before its bound are the ids before it.
        for cursor in [
            "",
            "0",
            "01796686539794905217",
            "01796686539794905217-fc",
            "01796686539794905217-zz",
            "1",
            "9",
            "~",
            "18446744073709551615-ffffffffffffffff",
            "18446744073709551615-g",
            "é",
        ] {
            let b = bound(cursor);
            for (i, k) in ids.iter().zip(&keys) {
                let before = *i < cursor;
                assert_eq!(b.is_none_or(|b| *k < b), before, "{i} vs cursor {cursor:?}");
            }
        }
    }
}
