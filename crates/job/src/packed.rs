//! A compact binary form of a [`Job`]: what the engine keeps in memory for
//! each job (one allocation, ~150 bytes for a typical job instead of
//! ~1 KB as a [`Job`] with its strings), and a record format for stores.
//!
//! Layout (all integers LEB128 varints, signed ones zigzag-encoded; strings
//! are a length and UTF-8 bytes; ids are 16 bytes for a canonical
//! lower-case UUID, else a string):
//!
//! ```text
//! id, flags: u16, name, command, owner, [dependent_jobs], [parent_jobs],
//! on_failure_job, schedule, retries, epsilon, template_delimiters,
//! job_type: u8, [remote_properties: JSON], time_zone, timeout,
//! retry_delay, overlap: u8, [notify: JSON], success_count,
//! [last_success], error_count, [last_error], [last_attempted_run],
//! number_of_finished_runs, [next_run_at], scheduled_runs,
//! [last_scheduled_at], created_at
//! ```
//!
//! `[x]`: present only when its flag is set. The id comes first so that
//! [`id_prefix`] finds it without decoding the rest. Decoding checks
//! every length and every string, so damaged bytes are an error, never a
//! panic; it is not a checksum (stores frame records with one).

use std::sync::Arc;

use jiff::Timestamp;

use crate::{Job, JobId, JobType, Metadata, NotifyTarget, Overlap, RemoteProperties};

/// Why bytes are not a packed job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("packed job: {0}")]
pub struct DecodeError(String);

fn err(what: impl Into<String>) -> DecodeError {
    DecodeError(what.into())
}

const DISABLED: u16 = 1;
const RESUME: u16 = 1 << 1;
const IS_DONE: u16 = 1 << 2;
const DEPENDENT: u16 = 1 << 3;
const PARENTS: u16 = 1 << 4;
const REMOTE: u16 = 1 << 5;
const NOTIFY: u16 = 1 << 6;
const LAST_SUCCESS: u16 = 1 << 7;
const LAST_ERROR: u16 = 1 << 8;
const LAST_ATTEMPT: u16 = 1 << 9;
const NEXT_RUN: u16 = 1 << 10;
const LAST_SCHEDULED: u16 = 1 << 11;
const KNOWN: u16 = (1 << 12) - 1;

const ID_UUID: u8 = 0;
const ID_TEXT: u8 = 1;

/// `job` packed.
pub fn encode(job: &Job) -> Vec<u8> {
    let mut out = Vec::with_capacity(96 + job.name.len() + job.command.len() + job.schedule.len());
    encode_into(job, &mut out);
    out
}

/// `job` packed, appended to `out`.
pub fn encode_into(job: &Job, out: &mut Vec<u8>) {
    let m = &job.metadata;
    let remote = *job.remote_properties != RemoteProperties::default();
    let flags = [
        (job.disabled, DISABLED),
        (job.resume_at_next_scheduled_time, RESUME),
        (job.is_done, IS_DONE),
        (job.dependent_jobs.is_some(), DEPENDENT),
        (job.parent_jobs.is_some(), PARENTS),
        (remote, REMOTE),
        (!job.notify.is_empty(), NOTIFY),
        (m.last_success.is_some(), LAST_SUCCESS),
        (m.last_error.is_some(), LAST_ERROR),
        (m.last_attempted_run.is_some(), LAST_ATTEMPT),
        (job.next_run_at.is_some(), NEXT_RUN),
        (job.last_scheduled_at.is_some(), LAST_SCHEDULED),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .fold(0u16, |f, (_, bit)| f | bit);
    put_id(out, &job.id);
    out.extend_from_slice(&flags.to_le_bytes());
    put_str(out, &job.name);
    put_str(out, &job.command);
    put_str(out, &job.owner);
    for ids in [&job.dependent_jobs, &job.parent_jobs]
        .into_iter()
        .flatten()
    {
        put_uint(out, ids.len() as u64);
        for id in ids {
            put_id(out, id);
        }
    }
    put_str(out, &job.on_failure_job);
    put_str(out, &job.schedule);
    put_uint(out, job.retries);
    put_str(out, &job.epsilon);
    put_str(out, &job.template_delimiters);
    out.push(match job.job_type {
        JobType::Local => 0,
        JobType::Remote => 1,
        JobType::InProcess => 2,
    });
    if remote {
        put_json(out, &*job.remote_properties);
    }
    put_str(out, &job.time_zone);
    put_str(out, &job.timeout);
    put_str(out, &job.retry_delay);
    out.push(match job.overlap {
        Overlap::Allow => 0,
        Overlap::Skip => 1,
    });
    if !job.notify.is_empty() {
        put_json(out, &job.notify);
    }
    put_uint(out, m.success_count);
    put_opt_time(out, m.last_success);
    put_uint(out, m.error_count);
    put_opt_time(out, m.last_error);
    put_opt_time(out, m.last_attempted_run);
    put_uint(out, m.number_of_finished_runs);
    put_opt_time(out, job.next_run_at);
    put_uint(out, job.scheduled_runs);
    put_opt_time(out, job.last_scheduled_at);
    put_time(out, job.created_at);
}

/// The job in `bytes` (all of them).
pub fn decode(bytes: &[u8]) -> Result<Job, DecodeError> {
    let mut r = Reader { bytes, at: 0 };
    let id = r.id()?;
    let flags = u16::from_le_bytes([r.byte()?, r.byte()?]);
    if flags & !KNOWN != 0 {
        return Err(err(format!("unknown flags {flags:#x}")));
    }
    let on = |bit: u16| flags & bit != 0;
    let name = r.string()?;
    let command = r.string()?;
    let owner = r.string()?;
    let dependent_jobs = if on(DEPENDENT) { Some(r.ids()?) } else { None };
    let parent_jobs = if on(PARENTS) { Some(r.ids()?) } else { None };
    let on_failure_job = r.string()?;
    let schedule = r.string()?;
    let retries = r.uint()?;
    let epsilon = r.string()?;
    let template_delimiters = r.string()?;
    let job_type = match r.byte()? {
        0 => JobType::Local,
        1 => JobType::Remote,
        2 => JobType::InProcess,
        t => return Err(err(format!("unknown job type {t}"))),
    };
    let remote_properties = if on(REMOTE) {
        Arc::new(r.json::<RemoteProperties>()?)
    } else {
        RemoteProperties::shared_default()
    };
    let time_zone = r.string()?;
    let timeout = r.string()?;
    let retry_delay = r.string()?;
    let overlap = match r.byte()? {
        0 => Overlap::Allow,
        1 => Overlap::Skip,
        o => return Err(err(format!("unknown overlap {o}"))),
    };
    let notify = if on(NOTIFY) {
        r.json::<Vec<NotifyTarget>>()?
    } else {
        Vec::new()
    };
    let metadata = r.metadata(flags)?;
    let next_run_at = r.opt_time(on(NEXT_RUN))?;
    let scheduled_runs = r.uint()?;
    let last_scheduled_at = r.opt_time(on(LAST_SCHEDULED))?;
    let created_at = r.time()?;
    if r.at != bytes.len() {
        return Err(err(format!("{} bytes after the job", bytes.len() - r.at)));
    }
    Ok(Job {
        id,
        name,
        command,
        owner,
        disabled: on(DISABLED),
        dependent_jobs,
        parent_jobs,
        on_failure_job,
        schedule,
        retries,
        epsilon,
        template_delimiters,
        resume_at_next_scheduled_time: on(RESUME),
        job_type,
        remote_properties,
        time_zone,
        timeout,
        retry_delay,
        overlap,
        notify,
        metadata,
        next_run_at,
        is_done: on(IS_DONE),
        scheduled_runs,
        last_scheduled_at,
        created_at,
    })
}

/// What scheduling reads of a packed job, borrowed from its bytes: enough
/// to parse its plan and compute its next run without decoding (or
/// allocating) the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View<'a> {
    /// The id's packed bytes (see [`encode_id`]); [`decode_id`] gives
    /// the text.
    pub id: &'a [u8],
    pub disabled: bool,
    pub resume_at_next_scheduled_time: bool,
    pub is_done: bool,
    /// It has at least one parent.
    pub is_child: bool,
    pub timing: crate::Timing<'a>,
    pub metadata: Metadata,
    pub next_run_at: Option<Timestamp>,
    pub last_scheduled_at: Option<Timestamp>,
    pub created_at: Timestamp,
}

/// The [`View`] of a packed job (every byte is still checked).
pub fn view(bytes: &[u8]) -> Result<View<'_>, DecodeError> {
    let mut r = Reader { bytes, at: 0 };
    let n = r.id_len()?;
    let id = r.take(n)?;
    let flags = u16::from_le_bytes([r.byte()?, r.byte()?]);
    if flags & !KNOWN != 0 {
        return Err(err(format!("unknown flags {flags:#x}")));
    }
    let on = |bit: u16| flags & bit != 0;
    for _ in 0..3 {
        r.str()?;
    }
    let mut is_child = false;
    for list in [DEPENDENT, PARENTS] {
        if on(list) {
            let count = r.len()?;
            if list == PARENTS {
                is_child = count > 0;
            }
            for _ in 0..count {
                let n = r.id_len()?;
                r.take(n)?;
            }
        }
    }
    r.str()?;
    let schedule = r.str()?;
    r.uint()?;
    let epsilon = r.str()?;
    r.str()?;
    if r.byte()? > 2 {
        return Err(err("unknown job type"));
    }
    if on(REMOTE) {
        let n = r.len()?;
        r.take(n)?;
    }
    let time_zone = r.str()?;
    let timeout = r.str()?;
    let retry_delay = r.str()?;
    if r.byte()? > 1 {
        return Err(err("unknown overlap"));
    }
    if on(NOTIFY) {
        let n = r.len()?;
        r.take(n)?;
    }
    let metadata = r.metadata(flags)?;
    let next_run_at = r.opt_time(on(NEXT_RUN))?;
    r.uint()?;
    let last_scheduled_at = r.opt_time(on(LAST_SCHEDULED))?;
    let created_at = r.time()?;
    if r.at != bytes.len() {
        return Err(err(format!("{} bytes after the job", bytes.len() - r.at)));
    }
    Ok(View {
        id,
        disabled: on(DISABLED),
        resume_at_next_scheduled_time: on(RESUME),
        is_done: on(IS_DONE),
        is_child,
        timing: crate::Timing {
            schedule,
            time_zone,
            epsilon,
            timeout,
            retry_delay,
        },
        metadata,
        next_run_at,
        last_scheduled_at,
        created_at,
    })
}

/// Whether a packed job is disabled, and its counters, without decoding
/// its strings (for totals over every job).
pub fn decode_counters(bytes: &[u8]) -> Result<(bool, Metadata), DecodeError> {
    view(bytes).map(|v| (v.disabled, v.metadata))
}

/// The packed form of an id alone, as it starts a packed job: compare it
/// with [`id_prefix`] to find a job by id without decoding it.
pub fn encode_id(id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(17);
    put_id(&mut out, id);
    out
}

/// The bytes of the id that starts a packed job (see [`encode_id`]);
/// empty if `bytes` does not start with one.
pub fn id_prefix(bytes: &[u8]) -> &[u8] {
    let mut r = Reader { bytes, at: 0 };
    match r.id_len() {
        Ok(n) => &bytes[..n],
        Err(_) => &[],
    }
}

/// The id of a packed job, decoding nothing else.
pub fn decode_id(bytes: &[u8]) -> Result<JobId, DecodeError> {
    Reader { bytes, at: 0 }.id()
}

fn put_uint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_int(out: &mut Vec<u8>, v: i64) {
    put_uint(out, ((v << 1) ^ (v >> 63)) as u64);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_uint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn put_id(out: &mut Vec<u8>, id: &str) {
    match canonical_uuid(id) {
        Some(u) => {
            out.push(ID_UUID);
            out.extend_from_slice(u.as_bytes());
        }
        None => {
            out.push(ID_TEXT);
            put_str(out, id);
        }
    }
}

/// `id` as a UUID when it is exactly one's lower-case hyphenated text (so
/// that decoding gives back the same string).
fn canonical_uuid(id: &str) -> Option<uuid::Uuid> {
    if id.len() != 36 {
        return None;
    }
    let u = uuid::Uuid::try_parse(id).ok()?;
    let mut buf = [0u8; 36];
    (u.hyphenated().encode_lower(&mut buf) == id).then_some(u)
}

fn put_time(out: &mut Vec<u8>, t: Timestamp) {
    put_int(out, t.as_second());
    put_int(out, t.subsec_nanosecond().into());
}

fn put_opt_time(out: &mut Vec<u8>, t: Option<Timestamp>) {
    if let Some(t) = t {
        put_time(out, t);
    }
}

fn put_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    // Serializing these plain structs to a Vec cannot fail; an empty
    // value would still decode as an error rather than a wrong job.
    let json = serde_json::to_vec(v).unwrap_or_default();
    put_uint(out, json.len() as u64);
    out.extend_from_slice(&json);
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, DecodeError> {
        let b = *self
            .bytes
            .get(self.at)
            .ok_or_else(|| err("ends too early"))?;
        self.at += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| err("a length past the end"))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn uint(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(err("a number longer than 64 bits"))
    }

    fn int(&mut self) -> Result<i64, DecodeError> {
        let u = self.uint()?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }

    fn len(&mut self) -> Result<usize, DecodeError> {
        usize::try_from(self.uint()?).map_err(|_| err("a length too large"))
    }

    fn str(&mut self) -> Result<&'a str, DecodeError> {
        let n = self.len()?;
        std::str::from_utf8(self.take(n)?).map_err(|_| err("a string that is not UTF-8"))
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        self.str().map(str::to_string)
    }

    /// The length of the id at the current position, which is left
    /// where it was.
    fn id_len(&mut self) -> Result<usize, DecodeError> {
        let start = self.at;
        match self.byte()? {
            ID_UUID => {
                self.take(16)?;
            }
            ID_TEXT => {
                self.str()?;
            }
            t => return Err(err(format!("unknown id kind {t}"))),
        }
        let n = self.at - start;
        self.at = start;
        Ok(n)
    }

    fn id(&mut self) -> Result<JobId, DecodeError> {
        match self.byte()? {
            ID_UUID => {
                let b = self.take(16)?;
                let u = uuid::Uuid::from_slice(b).map_err(|e| err(e.to_string()))?;
                Ok(u.hyphenated().to_string())
            }
            ID_TEXT => self.string(),
            t => Err(err(format!("unknown id kind {t}"))),
        }
    }

    fn ids(&mut self) -> Result<Vec<JobId>, DecodeError> {
        let n = self.len()?;
        // Each id takes at least 2 bytes: a count past that is damage.
        if n > (self.bytes.len() - self.at) / 2 {
            return Err(err("more ids than bytes"));
        }
        (0..n).map(|_| self.id()).collect()
    }

    fn time(&mut self) -> Result<Timestamp, DecodeError> {
        let secs = self.int()?;
        let nanos = i32::try_from(self.int()?).map_err(|_| err("nanoseconds out of range"))?;
        Timestamp::new(secs, nanos).map_err(|e| err(format!("a time out of range: {e}")))
    }

    fn opt_time(&mut self, present: bool) -> Result<Option<Timestamp>, DecodeError> {
        present.then(|| self.time()).transpose()
    }

    /// The counters (Kala's `metadata`); `flags` say which times are
    /// present.
    fn metadata(&mut self, flags: u16) -> Result<Metadata, DecodeError> {
        let on = |bit: u16| flags & bit != 0;
        Ok(Metadata {
            success_count: self.uint()?,
            last_success: self.opt_time(on(LAST_SUCCESS))?,
            error_count: self.uint()?,
            last_error: self.opt_time(on(LAST_ERROR))?,
            last_attempted_run: self.opt_time(on(LAST_ATTEMPT))?,
            number_of_finished_runs: self.uint()?,
        })
    }

    fn json<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, DecodeError> {
        let n = self.len()?;
        serde_json::from_slice(self.take(n)?).map_err(|e| err(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NotifyOn;

    fn full() -> Job {
        let mut j = Job::new("nightly backup ✓", "tar -czf /tmp/x.tgz /etc");
        j.owner = "ops@example.com".into();
        j.disabled = true;
        j.dependent_jobs = Some(vec![uuid::Uuid::new_v4().to_string(), "custom-id".into()]);
        j.parent_jobs = Some(vec![]);
        j.on_failure_job = uuid::Uuid::new_v4().to_string();
        j.schedule = "R5/2030-01-02T03:04:05Z/PT1H30M".into();
        j.retries = 300;
        j.epsilon = "PT5M".into();
        j.template_delimiters = "{{ }}".into();
        j.resume_at_next_scheduled_time = true;
        j.job_type = JobType::Remote;
        j.remote_properties = Arc::new(RemoteProperties {
            url: "http://127.0.0.1:1/x".into(),
            method: "POST".into(),
            body: "{\"a\":1}".into(),
            headers: Some([("X-A".to_string(), vec!["1".to_string()])].into()),
            timeout: -1,
            expected_response_codes: Some(vec![200, 204]),
        });
        j.time_zone = "Europe/Paris".into();
        j.timeout = "PT1M".into();
        j.retry_delay = "PT2S".into();
        j.overlap = Overlap::Skip;
        j.notify = vec![NotifyTarget::webhook(
            "http://127.0.0.1:2/",
            &[NotifyOn::Failure],
        )];
        j.metadata = Metadata {
            success_count: 7,
            last_success: Some(Timestamp::new(1_900_000_000, 123).expect("time")),
            error_count: 1 << 40,
            last_error: Some(Timestamp::new(0, -999_999_999).expect("time")),
            last_attempted_run: Some(Timestamp::MAX),
            number_of_finished_runs: u64::MAX,
        };
        j.next_run_at = Some(Timestamp::MIN);
        j.is_done = true;
        j.scheduled_runs = 3;
        j.last_scheduled_at = Some(Timestamp::UNIX_EPOCH);
        j
    }

    #[test]
    fn every_field_survives_a_round_trip() {
        for job in [Job::new("", ""), full()] {
            let bytes = encode(&job);
            assert_eq!(decode(&bytes), Ok(job.clone()));
            assert_eq!(decode_id(&bytes), Ok(job.id.clone()));
            assert_eq!(
                decode_counters(&bytes),
                Ok((job.disabled, job.metadata.clone()))
            );
            let v = view(&bytes).expect("a view");
            assert_eq!(v.id, encode_id(&job.id).as_slice());
            assert_eq!(v.timing, job.timing());
            assert_eq!(
                (
                    v.disabled,
                    v.resume_at_next_scheduled_time,
                    v.is_done,
                    v.is_child
                ),
                (
                    job.disabled,
                    job.resume_at_next_scheduled_time,
                    job.is_done,
                    job.is_child()
                )
            );
            assert_eq!(
                (
                    &v.metadata,
                    v.next_run_at,
                    v.last_scheduled_at,
                    v.created_at
                ),
                (
                    &job.metadata,
                    job.next_run_at,
                    job.last_scheduled_at,
                    job.created_at
                )
            );
            assert_eq!(id_prefix(&bytes), encode_id(&job.id).as_slice());
        }
    }

    #[test]
    fn a_uuid_id_takes_17_bytes_and_other_ids_keep_their_text() {
        let job = Job::new("a", "true");
        assert_eq!(encode_id(&job.id).len(), 17);
        for id in [
            "x",
            "",
            "6BA7B810-9DAD-11D1-80B4-00C04FD430C8",
            "{6ba7b810-9dad-11d1-80b4-00c04fd430c8}",
        ] {
            let mut j = job.clone();
            j.id = id.to_string();
            assert_eq!(encode_id(id)[0], ID_TEXT, "{id}");
            assert_eq!(decode(&encode(&j)).map(|j| j.id), Ok(id.to_string()));
        }
    }

    #[test]
    fn a_typical_job_is_small() {
        let mut j = Job::new("bench-000123", "true");
        j.schedule = "R/2030-01-01T00:00:00Z/PT1H".into();
        assert!(encode(&j).len() < 90, "{}", encode(&j).len());
    }

    #[test]
    fn damaged_bytes_are_errors_never_panics() {
        let bytes = encode(&full());
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n]).is_err(), "truncated at {n}");
            assert!(view(&bytes[..n]).is_err(), "truncated at {n}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
        // Every single-byte change either decodes to some job or fails.
        for i in 0..bytes.len() {
            for v in [0u8, 0x7f, 0x80, 0xff] {
                let mut b = bytes.clone();
                b[i] = v;
                let _ = decode(&b);
                let _ = decode_counters(&b);
                let _ = view(&b);
            }
        }
        assert!(
            decode(&[
                ID_TEXT, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01
            ])
            .is_err()
        );
        assert!(decode(&[9]).is_err());
        assert_eq!(id_prefix(&[9]), &[] as &[u8]);
    }
}
