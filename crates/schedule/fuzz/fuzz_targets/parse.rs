//! Feeds arbitrary bytes to kala's own parsers — the `R…` splitter, the
//! duration grammar and the strict start-time parser — and, when a schedule
//! parses, checks evaluation and the display round trip. Any panic is a bug.
//! (Cron text is left to the `schedule` target: its cost is croner's search.)
#![no_main]

use kala_schedule::{Duration, IsoSchedule, Start, Timestamp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(d) = Duration::parse(text) {
        assert_eq!(Duration::parse(&d.to_string()).ok(), Some(d));
    }
    if let Ok(s) = Start::parse(text) {
        assert_eq!(Start::parse(&s.to_string()).ok(), Some(s));
    }
    if let Ok(s) = IsoSchedule::parse(text, None) {
        let again = IsoSchedule::parse(&s.to_string(), None).expect("display must re-parse");
        assert_eq!(again, s, "display must round-trip");
        let probe = Timestamp::from_second(1_900_000_000).expect("in range");
        if let Some(n) = s.next_after(probe) {
            assert!(n > probe);
        }
        let mut prev = None;
        for k in 0..5 {
            let Some(t) = s.nth(k) else { break };
            if let Some(p) = prev {
                assert!(t > p, "occurrences must increase");
            }
            prev = Some(t);
        }
    }
});
