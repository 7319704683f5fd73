//! The jobs in memory, compact: each job is one packed allocation
//! (`kala_job::packed`, ~100–200 bytes) in a slab, found by id through a
//! hash table of slab indices, instead of a `Job` (~1 KB with its strings)
//! behind a map keyed by a copy of its id.
//!
//! Owns: [`Jobs`] (slab + index) and [`Slot`] (one packed job and its
//! queue mirror). Readers get a decoded `Job` (a copy); writers go through
//! [`Jobs::update`], which decodes, changes and packs again.
//! Must not: know about the queue's order or the timer (that is `state`).

use hashbrown::HashTable;
use jiff::Timestamp;
use kala_job::{Job, packed};

/// A slab index: what the queue holds to name a job.
pub(crate) type Idx = u32;

/// A job id in a form that sorts like its text without allocating for
/// the usual case: a UUID as its 16 bytes (its lower-case hex text sorts
/// the same way), any other id as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdKey {
    Uuid([u8; 16]),
    Text(Box<str>),
}

impl IdKey {
    /// The key of `id`.
    pub fn of(id: &str) -> IdKey {
        let packed = packed::encode_id(id);
        IdKey::from_packed(&packed).unwrap_or_else(|| IdKey::Text(id.into()))
    }

    /// The key of a packed id (see `packed::id_prefix`).
    fn from_packed(b: &[u8]) -> Option<IdKey> {
        match b.split_first()? {
            (0, rest) => rest.try_into().ok().map(IdKey::Uuid),
            _ => packed::decode_id(b).ok().map(|s| IdKey::Text(s.into())),
        }
    }

    /// The id as text.
    pub fn to_id(&self) -> String {
        match self {
            IdKey::Uuid(b) => uuid::Uuid::from_bytes(*b).hyphenated().to_string(),
            IdKey::Text(s) => s.to_string(),
        }
    }
}

impl IdKey {
    /// Whether `packed_id` (see `packed::id_prefix`) is this id.
    fn is(&self, packed_id: &[u8]) -> bool {
        match (self, packed_id.split_first()) {
            (IdKey::Uuid(b), Some((0, rest))) => rest == b,
            (IdKey::Text(s), Some((1, _))) => {
                packed::decode_id(packed_id).is_ok_and(|id| *id == **s)
            }
            _ => false,
        }
    }
}

/// A job named by its id, with where it was in memory when the name was
/// taken (a hint: checked against the id, so a job deleted since is
/// simply not found).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct JobRef {
    key: IdKey,
    idx: Idx,
}

impl JobRef {
    pub fn key(&self) -> &IdKey {
        &self.key
    }
}

impl Ord for IdKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        match (self, other) {
            (IdKey::Uuid(a), IdKey::Uuid(b)) => a.cmp(b),
            (IdKey::Text(a), IdKey::Text(b)) => a.cmp(b),
            (IdKey::Uuid(a), IdKey::Text(b)) => {
                let mut buf = [0u8; 36];
                let a = uuid::Uuid::from_bytes(*a).hyphenated();
                (*a.encode_lower(&mut buf)).cmp(&**b)
            }
            (IdKey::Text(_), IdKey::Uuid(_)) => other.cmp(self).reverse(),
        }
    }
}

impl PartialOrd for IdKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// One job in memory.
pub(crate) struct Slot {
    /// The job, packed; empty for a free slab entry.
    packed: Box<[u8]>,
    /// When the job's queue entry fires (it mirrors the entry, so that it
    /// can be found and removed).
    pub fire_at: Option<Timestamp>,
}

impl Slot {
    /// The job (a decoded copy). `None` only if the packed bytes were
    /// damaged in memory, which the codec's own tests rule out; callers
    /// treat it as a missing job rather than panic under the state lock.
    pub fn job(&self) -> Option<Job> {
        match packed::decode(&self.packed) {
            Ok(j) => Some(j),
            Err(e) => {
                tracing::error!(error = %e, "a job in memory does not decode");
                None
            }
        }
    }

    /// The id's packed bytes (see `packed::encode_id`).
    fn id_bytes(&self) -> &[u8] {
        packed::id_prefix(&self.packed)
    }

    /// Whether the job is disabled, and its counters (decoding no
    /// strings).
    pub fn counters(&self) -> Option<(bool, kala_job::Metadata)> {
        packed::decode_counters(&self.packed).ok()
    }

    /// The job's id, decoding nothing else.
    pub fn id(&self) -> Option<String> {
        packed::decode_id(&self.packed).ok()
    }

    pub fn set(&mut self, job: &Job) {
        self.packed = packed::encode(job).into_boxed_slice();
    }
}

/// Every job: a slab of [`Slot`]s and an index from id to slab entry.
pub(crate) struct Jobs {
    slots: Vec<Slot>,
    free: Vec<Idx>,
    index: HashTable<Idx>,
    hasher: foldhash::fast::RandomState,
}

impl Default for Jobs {
    fn default() -> Self {
        Jobs {
            slots: Vec::new(),
            free: Vec::new(),
            index: HashTable::new(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }
}

impl Jobs {
    fn hash(&self, id_bytes: &[u8]) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one(id_bytes)
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn reserve(&mut self, n: usize) {
        self.slots.reserve(n.saturating_sub(self.free.len()));
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.index.reserve(n, |&i| {
            use std::hash::BuildHasher;
            hasher.hash_one(slots[i as usize].id_bytes())
        });
    }

    /// The slab index of `id`.
    pub fn find(&self, id: &str) -> Option<Idx> {
        self.find_packed(&packed::encode_id(id))
    }

    /// The slab index of the job whose packed id is `key`.
    fn find_packed(&self, key: &[u8]) -> Option<Idx> {
        self.index
            .find(self.hash(key), |&i| {
                self.slots[i as usize].id_bytes() == key
            })
            .copied()
    }

    /// The slab index of the job with key `key`.
    pub fn find_key(&self, key: &IdKey) -> Option<Idx> {
        let packed = match key {
            IdKey::Uuid(b) => {
                let mut v = Vec::with_capacity(17);
                v.push(0);
                v.extend_from_slice(b);
                v
            }
            IdKey::Text(s) => packed::encode_id(s),
        };
        self.find_packed(&packed)
    }

    pub fn contains(&self, id: &str) -> bool {
        self.find(id).is_some()
    }

    pub fn slot(&self, id: &str) -> Option<&Slot> {
        self.find(id).map(|i| &self.slots[i as usize])
    }

    pub fn slot_mut(&mut self, id: &str) -> Option<&mut Slot> {
        self.find(id).map(|i| &mut self.slots[i as usize])
    }

    /// The live slot at `idx` (a queue entry's job).
    pub fn at(&self, idx: Idx) -> Option<&Slot> {
        self.slots
            .get(idx as usize)
            .filter(|s| !s.packed.is_empty())
    }

    /// `id`'s job (a decoded copy).
    pub fn get(&self, id: &str) -> Option<Job> {
        self.slot(id)?.job()
    }

    /// Changes `id`'s job in place; `None` if there is no such job.
    pub fn update<R>(&mut self, id: &str, f: impl FnOnce(&mut Job) -> R) -> Option<R> {
        let slot = self.slot_mut(id)?;
        let mut job = slot.job()?;
        let out = f(&mut job);
        slot.set(&job);
        Some(out)
    }

    /// Adds `job`, or replaces the job with its id (keeping its queue
    /// mirror). Returns its slab index.
    pub fn put(&mut self, job: &Job) -> Idx {
        if let Some(i) = self.find(&job.id) {
            self.slots[i as usize].set(job);
            return i;
        }
        self.put_new_packed(packed::encode(job).into_boxed_slice(), None)
    }

    /// Adds a packed job whose id is not here yet (a bulk load from a
    /// store, whose keys are unique): no lookup first. The bytes are
    /// kept as they are.
    pub fn put_new_packed(&mut self, packed: Box<[u8]>, fire_at: Option<Timestamp>) -> Idx {
        let slot = Slot { packed, fire_at };
        let h = self.hash(slot.id_bytes());
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = slot;
                i
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as Idx
            }
        };
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.index.insert_unique(h, i, |&j| {
            use std::hash::BuildHasher;
            hasher.hash_one(slots[j as usize].id_bytes())
        });
        i
    }

    /// Removes `id`'s job; the caller has taken it out of the queue.
    pub fn remove(&mut self, id: &str) -> bool {
        let key = packed::encode_id(id);
        let h = self.hash(&key);
        let slots = &self.slots;
        let Ok(entry) = self
            .index
            .find_entry(h, |&i| slots[i as usize].id_bytes() == key.as_slice())
        else {
            return false;
        };
        let (i, _) = entry.remove();
        self.slots[i as usize] = Slot {
            packed: Box::default(),
            fire_at: None,
        };
        self.free.push(i);
        true
    }

    pub fn clear(&mut self) {
        *self = Jobs {
            hasher: self.hasher.clone(),
            ..Jobs::default()
        };
    }

    /// Every live slot, in no particular order.
    pub fn slots(&self) -> impl Iterator<Item = &Slot> {
        self.slots.iter().filter(|s| !s.packed.is_empty())
    }

    /// Every job (decoded copies), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = Job> + '_ {
        self.slots().filter_map(Slot::job)
    }

    /// Every id with its slab index, in no particular order.
    pub fn ids(&self) -> impl Iterator<Item = (String, Idx)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.packed.is_empty())
            .filter_map(|(i, s)| Some((s.id()?, i as Idx)))
    }

    /// Every id's sort key with its slab index, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = (IdKey, Idx)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.packed.is_empty())
            .filter_map(|(i, s)| Some((IdKey::from_packed(s.id_bytes())?, i as Idx)))
    }

    /// The job `r` names, if it still exists (a decoded copy).
    pub fn get_ref(&self, r: &JobRef) -> Option<Job> {
        match self.at(r.idx) {
            Some(slot) if r.key.is(slot.id_bytes()) => slot.job(),
            _ => self.get_at(self.find_key(&r.key)?),
        }
    }

    /// Every job as a [`JobRef`], in no particular order.
    pub fn refs(&self) -> impl Iterator<Item = JobRef> + '_ {
        self.keys().map(|(key, idx)| JobRef { key, idx })
    }

    /// The job at slab index `idx` (a decoded copy).
    pub fn get_at(&self, idx: Idx) -> Option<Job> {
        self.at(idx)?.job()
    }

    pub fn at_mut(&mut self, idx: Idx) -> Option<&mut Slot> {
        self.slots
            .get_mut(idx as usize)
            .filter(|s| !s.packed.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_find_update_remove_and_reuse() {
        let mut jobs = Jobs::default();
        let a = Job::new("a", "true");
        let mut b = Job::new("b", "true");
        b.id = "not-a-uuid".into();
        let ia = jobs.put(&a);
        let ib = jobs.put(&b);
        assert_ne!(ia, ib);
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs.get(&a.id), Some(a.clone()));
        assert_eq!(jobs.get("not-a-uuid").map(|j| j.name), Some("b".into()));
        assert_eq!(jobs.update(&a.id, |j| j.name = "a2".into()), Some(()));
        assert_eq!(jobs.get(&a.id).map(|j| j.name), Some("a2".into()));
        assert_eq!(jobs.put(&a), ia, "a put of an existing id replaces it");
        assert_eq!(jobs.get(&a.id).map(|j| j.name), Some("a".into()));
        assert!(jobs.remove(&a.id));
        assert!(!jobs.remove(&a.id));
        assert!(jobs.get(&a.id).is_none() && jobs.at(ia).is_none());
        let c = Job::new("c", "true");
        assert_eq!(jobs.put(&c), ia, "the freed entry is reused");
        let mut ids: Vec<String> = jobs.ids().map(|(id, _)| id).collect();
        ids.sort();
        let mut want = vec![c.id.clone(), b.id.clone()];
        want.sort();
        assert_eq!(ids, want);
        assert!(jobs.update("missing", |_| ()).is_none());
    }

    #[test]
    fn a_ref_to_a_deleted_job_does_not_find_the_job_that_took_its_place() {
        let mut jobs = Jobs::default();
        let a = Job::new("a", "true");
        let mut t = Job::new("t", "true");
        t.id = "text-id".into();
        jobs.put(&a);
        jobs.put(&t);
        let refs: Vec<JobRef> = jobs.refs().collect();
        for r in &refs {
            assert!(jobs.get_ref(r).is_some());
        }
        jobs.remove(&a.id);
        let b = Job::new("b", "true");
        jobs.put(&b); // takes a's slab entry
        let found: Vec<String> = refs
            .iter()
            .filter_map(|r| jobs.get_ref(r))
            .map(|j| j.id)
            .collect();
        assert_eq!(found, vec![t.id.clone()], "a's ref finds neither a nor b");
        // A job that moved (removed and put again) is still found by id.
        jobs.remove("text-id");
        jobs.put(&t);
        assert!(
            refs.iter()
                .any(|r| jobs.get_ref(r).is_some_and(|j| j.id == "text-id"))
        );
    }

    #[test]
    fn id_keys_sort_like_the_ids() {
        let mut ids: Vec<String> = (0..200).map(|_| uuid::Uuid::new_v4().to_string()).collect();
        ids.extend(
            [
                "",
                "0",
                "1-a",
                "zzz",
                "6BA7B810-9dad-11d1-80b4-00c04fd430c8",
                "f",
            ]
            .map(String::from),
        );
        ids.push("00000000-0000-0000-0000-000000000000".into());
        let mut keys: Vec<IdKey> = ids.iter().map(|id| IdKey::of(id)).collect();
        keys.sort();
        ids.sort();
        assert_eq!(keys.iter().map(IdKey::to_id).collect::<Vec<_>>(), ids);
        assert!(matches!(
            IdKey::of(&ids[1]),
            IdKey::Uuid(_) | IdKey::Text(_)
        ));
    }

    #[test]
    fn many_jobs_stay_findable_through_growth() {
        let mut jobs = Jobs::default();
        let all: Vec<Job> = (0..5000)
            .map(|i| Job::new(format!("j{i}"), "true"))
            .collect();
        for j in &all {
            jobs.put(j);
        }
        for j in all.iter().step_by(3) {
            assert!(jobs.remove(&j.id));
        }
        for (i, j) in all.iter().enumerate() {
            assert_eq!(jobs.contains(&j.id), i % 3 != 0, "{i}");
        }
        assert_eq!(jobs.len(), all.len() - all.len().div_ceil(3));
    }
}
