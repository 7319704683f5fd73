//! The primitives of the packed form: varints, zigzag integers, strings,
//! ids, times and JSON blobs, written to a `Vec<u8>` and read back by
//! [`Reader`], which checks every length and never panics.

use jiff::Timestamp;

use super::{DecodeError, ID_TEXT, ID_UUID, LAST_ATTEMPT, LAST_ERROR, LAST_SUCCESS, err};
use crate::{JobId, Metadata};

pub(super) fn put_uint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(super) fn put_int(out: &mut Vec<u8>, v: i64) {
    put_uint(out, ((v << 1) ^ (v >> 63)) as u64);
}

pub(super) fn put_str(out: &mut Vec<u8>, s: &str) {
    put_uint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

pub(super) fn put_id(out: &mut Vec<u8>, id: &str) {
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
pub(super) fn canonical_uuid(id: &str) -> Option<uuid::Uuid> {
    if id.len() != 36 {
        return None;
    }
    let u = uuid::Uuid::try_parse(id).ok()?;
    let mut buf = [0u8; 36];
    (u.hyphenated().encode_lower(&mut buf) == id).then_some(u)
}

pub(super) fn put_time(out: &mut Vec<u8>, t: Timestamp) {
    put_int(out, t.as_second());
    put_int(out, t.subsec_nanosecond().into());
}

pub(super) fn put_opt_time(out: &mut Vec<u8>, t: Option<Timestamp>) {
    if let Some(t) = t {
        put_time(out, t);
    }
}

pub(super) fn put_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    // Serializing these plain structs to a Vec cannot fail; an empty
    // value would still decode as an error rather than a wrong job.
    let json = serde_json::to_vec(v).unwrap_or_default();
    put_uint(out, json.len() as u64);
    out.extend_from_slice(&json);
}

pub(super) struct Reader<'a> {
    pub(super) bytes: &'a [u8],
    pub(super) at: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn byte(&mut self) -> Result<u8, DecodeError> {
        let b = *self
            .bytes
            .get(self.at)
            .ok_or_else(|| err("ends too early"))?;
        self.at += 1;
        Ok(b)
    }

    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| err("a length past the end"))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    pub(super) fn uint(&mut self) -> Result<u64, DecodeError> {
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

    pub(super) fn int(&mut self) -> Result<i64, DecodeError> {
        let u = self.uint()?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }

    pub(super) fn len(&mut self) -> Result<usize, DecodeError> {
        usize::try_from(self.uint()?).map_err(|_| err("a length too large"))
    }

    pub(super) fn str(&mut self) -> Result<&'a str, DecodeError> {
        let n = self.len()?;
        std::str::from_utf8(self.take(n)?).map_err(|_| err("a string that is not UTF-8"))
    }

    pub(super) fn string(&mut self) -> Result<String, DecodeError> {
        self.str().map(str::to_string)
    }

    /// The length of the id at the current position, which is left
    /// where it was.
    pub(super) fn id_len(&mut self) -> Result<usize, DecodeError> {
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

    pub(super) fn id(&mut self) -> Result<JobId, DecodeError> {
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

    pub(super) fn ids(&mut self) -> Result<Vec<JobId>, DecodeError> {
        let n = self.len()?;
        // Each id takes at least 2 bytes: a count past that is damage.
        if n > (self.bytes.len() - self.at) / 2 {
            return Err(err("more ids than bytes"));
        }
        (0..n).map(|_| self.id()).collect()
    }

    pub(super) fn time(&mut self) -> Result<Timestamp, DecodeError> {
        let secs = self.int()?;
        let nanos = i32::try_from(self.int()?).map_err(|_| err("nanoseconds out of range"))?;
        Timestamp::new(secs, nanos).map_err(|e| err(format!("a time out of range: {e}")))
    }

    pub(super) fn opt_time(&mut self, present: bool) -> Result<Option<Timestamp>, DecodeError> {
        present.then(|| self.time()).transpose()
    }

    /// The counters (Kala's `metadata`); `flags` say which times are
    /// present.
    pub(super) fn metadata(&mut self, flags: u16) -> Result<Metadata, DecodeError> {
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

    pub(super) fn json<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, DecodeError> {
        let n = self.len()?;
        serde_json::from_slice(self.take(n)?).map_err(|e| err(e.to_string()))
    }
}
