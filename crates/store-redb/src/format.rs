//! The record format on disk (format 4). A job is
//! `[3][CRC-32][packed job]` (`kala_job::packed`: the file is ~4x smaller
//! than with JSON jobs); runs, open runs and notices are framed JSON
//! (`[2][CRC-32][JSON]`); audit entries are packed (`audit_record`).
//! Formats 1 (plain JSON) and 2 (framed JSON jobs) are migrated here when
//! opened, format 3's audit tables in `audit`. Reads of the whole file at
//! start-up run guarded, because redb panics on some damaged files.
//!
//! Owns: `FORMAT`, the job record, the migrations, [`Verified`],
//! `guarded`, `read_all`.

use std::path::Path;

use kala_job::Job;
use kala_store::json::{FRAMED, decode_framed, frame};
use kala_store::{Result, StoreError};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};

use crate::{JOBS, RUNS, backend};

/// The file's format: 1 stored plain JSON values; 2 frames each value with
/// a version byte and a CRC-32 (`kala_store::json::encode_framed`); 3
/// stores jobs packed ([`encode_job`]); 4 keys audit entries by a `u128`
/// and packs them (`audit_record`).
pub(crate) const FORMAT: u64 = 4;

/// The version byte of a packed job record.
const PACKED: u8 = 3;

/// A job's record: `[PACKED][CRC-32 of the rest, little-endian][packed]`.
pub(crate) fn encode_job(job: &Job) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(&[PACKED, 0, 0, 0, 0]);
    kala_job::packed::encode_into(job, &mut out);
    let crc = crc32fast::hash(&out[5..]).to_le_bytes();
    out[1..5].copy_from_slice(&crc);
    out
}

/// A job's record, checked (a format 2 record, framed JSON, is read
/// too); damage is [`StoreError::Corrupt`] naming `key`.
pub(crate) fn decode_job(key: &str, bytes: &[u8]) -> Result<Job> {
    let corrupt = |reason: String| StoreError::Corrupt {
        key: key.to_string(),
        reason,
    };
    match bytes {
        [PACKED, a, b, c, d, packed @ ..] => {
            if crc32fast::hash(packed) != u32::from_le_bytes([*a, *b, *c, *d]) {
                return Err(corrupt(
                    "checksum mismatch: the stored value was damaged".into(),
                ));
            }
            kala_job::packed::decode(packed).map_err(|e| corrupt(e.to_string()))
        }
        [FRAMED, ..] => decode_framed(key, bytes),
        [] => Err(corrupt("empty value".into())),
        _ => Err(corrupt("unknown record format".into())),
    }
}

/// Format 2 → 3, inside the opening transaction: every job's framed JSON
/// becomes its packed record (all or nothing; a damaged record stops the
/// opening with its key, as a read would).
pub(crate) fn migrate_to_packed(txn: &redb::WriteTransaction) -> Result<()> {
    let mut jobs = txn.open_table(JOBS).map_err(backend)?;
    let mut packed = Vec::new();
    for entry in jobs.iter().map_err(backend)? {
        let (k, v) = entry.map_err(backend)?;
        let job = decode_job(k.value(), v.value())?;
        packed.push((k.value().to_string(), encode_job(&job)));
    }
    for (k, v) in &packed {
        jobs.insert(k.as_str(), v.as_slice()).map_err(backend)?;
    }
    Ok(())
}

/// Format 1 → 2, inside the opening transaction: every job and run value
/// is framed (all or nothing).
pub(crate) fn migrate_to_framed(txn: &redb::WriteTransaction) -> Result<()> {
    let mut jobs = txn.open_table(JOBS).map_err(backend)?;
    let mut framed = Vec::new();
    for entry in jobs.iter().map_err(backend)? {
        let (k, v) = entry.map_err(backend)?;
        framed.push((k.value().to_string(), frame(v.value())?));
    }
    for (k, v) in &framed {
        jobs.insert(k.as_str(), v.as_slice()).map_err(backend)?;
    }
    let mut runs = txn.open_table(RUNS).map_err(backend)?;
    let mut framed = Vec::new();
    for entry in runs.iter().map_err(backend)? {
        let (k, v) = entry.map_err(backend)?;
        let (id, at) = k.value();
        framed.push((id.to_string(), at, frame(v.value())?));
    }
    for (id, at, v) in &framed {
        runs.insert((id.as_str(), *at), v.as_slice())
            .map_err(backend)?;
    }
    Ok(())
}

/// What [`RedbStore::verify`](crate::RedbStore::verify) found.
#[derive(Debug, Default)]
pub struct Verified {
    pub jobs: usize,
    pub runs: usize,
    pub open_runs: usize,
    /// One line per damaged record, naming it.
    pub damaged: Vec<String>,
}

/// Runs `f` (opening or reading the whole file, at start-up), turning a
/// panic inside redb — it raises some on damaged files, e.g. "entered
/// unreachable code" on a zeroed page — into an error naming the file.
/// The panic hook is silenced meanwhile so that the operator gets one line.
pub(crate) fn guarded<T>(path: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    out.unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into());
        Err(StoreError::Backend(format!(
            "{}: the file is damaged (redb: {why}); restore it from a backup or move it away",
            path.display()
        )))
    })
}

/// Every job, in one read transaction, decoded by as many threads as the
/// machine has cores (each takes a range of the ids: they are UUIDs, so
/// ranges by the first hex digit are even; any other ids are still all
/// read, only less evenly).
pub(crate) fn read_all(db: &Database) -> Result<Vec<Job>> {
    read_all_with(db, decode_job)
}

/// Every job packed (`kala_job::packed`), checked against its CRC, as
/// [`read_all`] reads them.
pub(crate) fn read_all_packed(db: &Database) -> Result<Vec<Box<[u8]>>> {
    read_all_with(db, unpack_job)
}

/// A job record's packed bytes, checked (a format 2 record is decoded
/// and packed).
fn unpack_job(key: &str, bytes: &[u8]) -> Result<Box<[u8]>> {
    match bytes {
        [PACKED, a, b, c, d, packed @ ..] => {
            if crc32fast::hash(packed) != u32::from_le_bytes([*a, *b, *c, *d]) {
                return Err(StoreError::Corrupt {
                    key: key.to_string(),
                    reason: "checksum mismatch: the stored value was damaged".into(),
                });
            }
            Ok(packed.into())
        }
        _ => decode_job(key, bytes).map(|j| kala_job::packed::encode(&j).into_boxed_slice()),
    }
}

fn read_all_with<T: Send>(db: &Database, decode: fn(&str, &[u8]) -> Result<T>) -> Result<Vec<T>> {
    let txn = db.begin_read().map_err(backend)?;
    let total = {
        let table = txn.open_table(JOBS).map_err(backend)?;
        usize::try_from(table.len().map_err(backend)?).unwrap_or(0)
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 16);
    if threads == 1 || total < 10_000 {
        return read_range(&txn, None, None, total, decode);
    }
    // Boundaries between ranges: hex digits spread over 0-f.
    const HEX: &[&str] = &[
        "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "a", "b", "c", "d", "e", "f",
    ];
    let cuts: Vec<&str> = (1..threads).map(|i| HEX[i * 16 / threads]).collect();
    let parts: Vec<Result<Vec<T>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let from = (i > 0).then(|| cuts[i - 1]);
                let to = cuts.get(i).copied();
                let txn = &txn;
                scope.spawn(move || read_range(txn, from, to, total / threads, decode))
            })
            .collect();
        handles
            .into_iter()
            // A panic (redb's, on a damaged page) goes on in this thread,
            // where `guarded` turns it into an error naming the file.
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut out = Vec::with_capacity(total);
    for part in parts {
        out.extend(part?);
    }
    Ok(out)
}

/// The jobs with `from <= id < to` (unbounded where `None`).
fn read_range<T>(
    txn: &redb::ReadTransaction,
    from: Option<&str>,
    to: Option<&str>,
    hint: usize,
    decode: fn(&str, &[u8]) -> Result<T>,
) -> Result<Vec<T>> {
    let table = txn.open_table(JOBS).map_err(backend)?;
    let mut out = Vec::with_capacity(hint);
    let mut add = |entry: std::result::Result<
        (redb::AccessGuard<'_, &str>, redb::AccessGuard<'_, &[u8]>),
        redb::StorageError,
    >| {
        let (k, v) = entry.map_err(backend)?;
        out.push(decode(k.value(), v.value())?);
        Ok::<(), StoreError>(())
    };
    match (from, to) {
        (None, None) => table.iter().map_err(backend)?.try_for_each(&mut add)?,
        (Some(f), None) => table.range(f..).map_err(backend)?.try_for_each(&mut add)?,
        (None, Some(t)) => table.range(..t).map_err(backend)?.try_for_each(&mut add)?,
        (Some(f), Some(t)) => table.range(f..t).map_err(backend)?.try_for_each(&mut add)?,
    }
    Ok(out)
}
