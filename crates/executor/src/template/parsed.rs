//! Parsed templates, kept: a job's template is checked against the
//! limits and parsed at its first run, and reused by the next ones.
//!
//! Owns: [`parsed`] and its bounded cache. Must not: render.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use super::{checked_source, no_panic};

/// Parsed templates by (delimiters, text): a job's template is checked
/// and parsed at its first run, not at every run (parsing was half of a
/// small template's rendering). Bounded by the text it holds; emptied
/// when full.
static PARSED: LazyLock<Mutex<Parsed>> = LazyLock::new(Default::default);

/// Most template text [`PARSED`] holds before it is emptied.
const PARSED_BYTES: usize = 1 << 20;

#[derive(Default)]
struct Parsed {
    /// Delimiters → text → the parsed template.
    by_text: HashMap<String, HashMap<String, Arc<gtmpl::Template>>>,
    bytes: usize,
}

/// `text` checked against the limits and parsed, from [`PARSED`] when it
/// was before.
pub(super) fn parsed(text: &str, delimiters: &str) -> Result<Arc<gtmpl::Template>, String> {
    let cache = || PARSED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(t) = cache().by_text.get(delimiters).and_then(|m| m.get(text)) {
        return Ok(t.clone());
    }
    let Some(source) = checked_source(text, delimiters)? else {
        return Err("Job has invalid templating delimiters.".into());
    };
    let tmpl = no_panic(|| {
        let mut tmpl = gtmpl::Template::default();
        tmpl.parse(source)
            .map_err(|e| format!("Error templatizing: Error parsing template: {e}"))?;
        Ok(Arc::new(tmpl))
    })?;
    let mut c = cache();
    let size = delimiters.len() + text.len();
    if c.bytes + size > PARSED_BYTES {
        c.by_text.clear();
        c.bytes = 0;
    }
    let added = c
        .by_text
        .entry(delimiters.to_string())
        .or_default()
        .insert(text.to_string(), tmpl.clone())
        .is_none();
    if added {
        c.bytes += size;
    }
    Ok(tmpl)
}
