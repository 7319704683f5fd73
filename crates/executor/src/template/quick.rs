//! Which templates render in place: those whose output is small by
//! construction (see [`renders_quickly`]).

use kala_job::Job;

use super::MAX_FORMAT_WIDTH;

/// The most a template rendered in place (not on a blocking thread) may
/// produce, by the bound of [`renders_quickly`].
const QUICK_OUTPUT_BYTES: usize = 256 * 1024;

/// Whether rendering `text` with `job` is cheap enough to do in place:
/// no `range` (the only loop: it repeats its body for each element;
/// the word anywhere counts), and a bound on the output — each action
/// prints at most all of the data's text plus a `printf` width
/// ([`MAX_FORMAT_WIDTH`]) — of at most 256 KiB. Anything else renders on
/// a blocking thread under a timeout.
pub fn renders_quickly(
    text: &str,
    delimiters: &str,
    job: &Job,
    run: Option<&crate::RunContext>,
) -> bool {
    let Some((left, _)) = delimiters.split_once(' ').filter(|(l, _)| !l.is_empty()) else {
        return true; // not a template (or not a valid one): nothing to render
    };
    if text.contains("range") {
        return false;
    }
    let actions = text.matches(left).count();
    let lists = |v: &[String]| v.iter().map(|s| s.len() + 1).sum::<usize>();
    let r = &job.remote_properties;
    let headers: usize = r
        .headers
        .as_ref()
        .map_or(0, |h| h.iter().map(|(k, v)| k.len() + lists(v)).sum());
    let run_bytes = run.map_or(0, |c| {
        c.job_id.len() + c.job_name.len() + c.run_id.len() + c.node.len() + 64
    });
    let data = job.name.len()
        + job.id.len()
        + job.command.len()
        + job.owner.len()
        + job.dependent_jobs.as_deref().map_or(0, lists)
        + job.parent_jobs.as_deref().map_or(0, lists)
        + job.on_failure_job.len()
        + job.schedule.len()
        + job.epsilon.len()
        + job.template_delimiters.len()
        + r.url.len()
        + r.method.len()
        + r.body.len()
        + headers
        + run_bytes
        + 1024; // numbers, flags and times
    actions
        .saturating_mul(data + MAX_FORMAT_WIDTH as usize)
        .saturating_add(text.len())
        <= QUICK_OUTPUT_BYTES
}
