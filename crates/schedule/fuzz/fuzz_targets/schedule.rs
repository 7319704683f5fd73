//! Feeds arbitrary bytes to the schedule parser and, when it parses,
//! exercises evaluation and the display round trip. Any panic is a bug.
#![no_main]

use kala_schedule::{Duration, Schedule, Timestamp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = Duration::parse(text);
    if let Ok(s) = Schedule::parse(text) {
        let again = Schedule::parse(&s.to_string()).expect("display must re-parse");
        assert_eq!(again, s, "display must round-trip");
        let probe = Timestamp::from_second(1_900_000_000).expect("in range");
        if let Some(n) = s.next_after(probe) {
            assert!(n > probe);
        }
        let mut prev = None;
        for t in s.occurrences().take(5) {
            if let Some(p) = prev {
                assert!(t > p, "occurrences must increase");
            }
            prev = Some(t);
        }
    }
});
