use super::*;
use proptest::prelude::*;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn sched(s: &str) -> Schedule {
    Schedule::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn runs(s: &str, n: usize) -> Vec<String> {
    sched(s)
        .occurrences()
        .take(n)
        .map(|t| t.to_string())
        .collect()
}

/// Every schedule example in the seeds (Kala's READMEs) and the spec.
#[test]
fn every_example_from_seeds_and_spec_parses() {
    for ok in [
        "R2/2015-06-04T19:25:16.828696-07:00/PT10S",
        "R2/2017-06-04T19:25:16.828696-07:00/PT10S",
        "R/2014-03-08T20:00:00Z/PT2H",
        "R2/2026-11-22T15:23:47Z/PT2S",
        "R/2026-11-22T16:23:53/PT1H",
        "R/2026-11-22T16:23:53.828696-07:00/P1W",
        "R231/2026-11-22T16:23:53Z/P1Y2M10DT2H30M15S",
        "R0/2026-11-22T16:23:53Z/PT1S",
        "R2/2030-01-01T00:00:00Z/PT10S",
        "R/2026-11-22T15:23:54Z/PT1S",
        "R5/2030-01-01T00:00:00Z/PT5S",
        "R/2030-01-01T00:00:00Z/P1DT10M10S",
        "R/2030-01-01T00:00:00Z/PT10M10S",
        "R/2030-01-01T00:00:00Z/P1DT10S",
        "R/2030-01-01T00:00:00Z/P1Y1D",
        "R/2030-01-01T00:00:00Z/P2M",
        "R/2030-01-01T00:00:00Z/PT36H",
        "R/2030-01-01T00:00:00.5/PT1S",
        "R/2030-01-01T00:00:00.123456789123Z/PT1S",
        "R+3/2030-01-01T00:00:00Z/PT1S",
        "R03/2030-01-01T00:00:00Z/PT1S",
        "R-1/2030-01-01T00:00:00Z/PT1S",
        "R/2030-01-01T00:00:00Z/P1W2D",
        "R/2030-01-01T00:00:00Z/xyzP1D",
        // R0 ignores the interval entirely, as Kala does.
        "R0/2030-01-01T00:00:00Z/",
        "R0/2030-01-01T00:00:00Z/garbage",
        // Our extensions.
        "R/2030-03-29T02:30:00[Europe/Berlin]/P1D",
        "0 9 * * 1-5",
        "*/10 * * * * *",
        "@daily",
        "CRON_TZ=Europe/Berlin 30 2 * * *",
    ] {
        let s = sched(ok);
        let again = sched(&s.to_string());
        assert_eq!(again, s, "{ok} → {s}");
    }
}

#[test]
fn every_bad_example_is_rejected_with_a_named_part() {
    for (bad, part) in [
        ("garbage", "not formatted correctly"),
        ("hfhgasyuweu123", "not formatted correctly"),
        ("R/2026-11-22T15:24:53Z/XYZ", "interval \"XYZ\""),
        ("Rx/2030-01-01T00:00:00Z/PT1S", "repeat \"Rx\""),
        ("RRR/2030-01-01T00:00:00Z/PT1S", "repeat \"RRR\""),
        ("r/2030-01-01T00:00:00Z/PT1S", "repeat \"r\""),
        ("X/2030-01-01T00:00:00Z/PT1S", "repeat \"X\""),
        ("/2030-01-01T00:00:00Z/PT1S", "repeat \"\""),
        ("R 3/2030-01-01T00:00:00Z/PT1S", "cron"),
        ("R/not-a-date/PT1S", "start \"not-a-date\""),
        ("R0/hfhgasyuweu123/", "start \"hfhgasyuweu123\""),
        ("R/2030-01-01T00:00:00Z/DTT", "interval \"DTT\""),
        ("R/2030-01-01T00:00:00Z/000D", "interval \"000D\""),
        ("R/2030-01-01T00:00:00Z/ASDASD", "interval \"ASDASD\""),
        (
            "R/2030-01-01T00:00:00Z/P1X",
            "interval \"P1X\": unknown designator 'X'",
        ),
        ("R/2030-01-01T00:00:00Z/PT0S", "non-zero interval"),
        ("R2/2030-01-01T00:00:00Z/P0D", "non-zero interval"),
        ("R/2030-01-01T00:00:00Z", "three parts"),
        ("R/2030-01-01T00:00:00Z/PT1S/x", "three parts"),
        ("R/2030-01-01T00:00:00[Nowhere/City]/PT1S", "start"),
        ("", "empty"),
        ("61 * * * *", "minute 61 is out of range 0–59"),
        ("0 24 * * *", "hour 24 is out of range 0–23"),
        ("0 0 0 * *", "day of month 0 is out of range 1–31"),
        ("0 0 1 13 *", "month 13 is out of range 1–12"),
        ("0 0 * * 1-9", "day of week 9 is out of range 0–7"),
        ("60 0 0 * * *", "second 60 is out of range 0–59"),
        ("5,70/2 * * * *", "minute 70 is out of range 0–59"),
        ("* * *", "cron"),
        ("0 0 30 2 *", "never matches"),
        // An empty list is known to match nothing without a search.
        (",,, * * * *", "the minutes field allows no value"),
        ("0 ,, * * *", "the hours field allows no value"),
        // Found by fuzzing: croner searched without end on this.
        ("0 0 1w 3 +", "'+' is not supported"),
        ("CRON_TZ=Mars/Base 0 9 * * *", "time zone"),
    ] {
        let e = Schedule::parse(bad).expect_err(bad).to_string();
        assert!(e.contains(part), "{bad:?}: {e:?} should mention {part:?}");
    }
}

#[test]
fn repeat_counts_follow_kala() {
    assert_eq!(runs("R2/2030-01-01T00:00:00Z/PT2S", 10).len(), 3);
    assert_eq!(runs("R1/2030-01-01T00:00:00Z/PT2S", 10).len(), 2);
    assert_eq!(runs("R0/2030-01-01T00:00:00Z/PT2S", 10).len(), 1);
    assert_eq!(
        runs("R0/2030-01-01T00:00:00Z/", 10),
        ["2030-01-01T00:00:00Z"]
    );
    assert_eq!(runs("R/2030-01-01T00:00:00Z/PT2S", 100).len(), 100);
    assert_eq!(sched("R2/2030-01-01T00:00:00Z/PT2S").max_runs(), Some(3));
    assert_eq!(sched("R/2030-01-01T00:00:00Z/PT2S").max_runs(), None);
    assert_eq!(
        runs("R2/2026-11-22T15:23:47Z/PT2S", 5),
        [
            "2026-11-22T15:23:47Z",
            "2026-11-22T15:23:49Z",
            "2026-11-22T15:23:51Z"
        ]
    );
}

#[test]
fn next_after_is_strict_and_bounded() {
    let s = sched("R2/2030-01-01T00:00:00Z/PT10S");
    assert_eq!(
        s.next_after(ts("2029-01-01T00:00:00Z")),
        Some(ts("2030-01-01T00:00:00Z"))
    );
    assert_eq!(
        s.next_after(ts("2030-01-01T00:00:00Z")),
        Some(ts("2030-01-01T00:00:10Z"))
    );
    assert_eq!(
        s.next_after(ts("2030-01-01T00:00:09.999Z")),
        Some(ts("2030-01-01T00:00:10Z"))
    );
    assert_eq!(
        s.next_after(ts("2030-01-01T00:00:19Z")),
        Some(ts("2030-01-01T00:00:20Z"))
    );
    assert_eq!(s.next_after(ts("2030-01-01T00:00:20Z")), None);
    assert_eq!(
        s.next_at_or_after(ts("2030-01-01T00:00:20Z")),
        Some(ts("2030-01-01T00:00:20Z"))
    );
    // A far-future query on a forever schedule is answered without a scan.
    let f = sched("R/2000-01-01T00:00:00.25Z/PT1S");
    assert_eq!(
        f.next_after(ts("2090-06-01T12:00:00Z")),
        Some(ts("2090-06-01T12:00:00.25Z"))
    );
    let m = sched("R/2000-01-31T00:00:00Z/P1M");
    assert_eq!(
        m.next_after(ts("2090-02-15T00:00:00Z")),
        Some(ts("2090-02-28T00:00:00Z"))
    );
}

#[test]
fn r0_with_a_zero_interval_does_not_divide_by_zero() {
    // Found by the fuzzer: this used to panic in next_after.
    let s = sched("R0/2017-06-04T19:25:16.82/PT0S");
    assert_eq!(s.next_after(ts("2030-01-01T00:00:00Z")), None);
    assert_eq!(
        s.next_after(ts("2000-01-01T00:00:00Z")),
        Some(ts("2017-06-04T19:25:16.82Z"))
    );
    assert_eq!(s.to_string(), "R0/2017-06-04T19:25:16.82/PT0S");
    assert_eq!(
        s.latest_at_or_before(ts("2030-01-01T00:00:00Z")),
        Some(ts("2017-06-04T19:25:16.82Z"))
    );
}

#[test]
fn latest_at_or_before_for_catch_up() {
    let s = sched("R2/2030-01-01T00:00:00Z/PT10S");
    assert_eq!(s.latest_at_or_before(ts("2029-12-31T00:00:00Z")), None);
    assert_eq!(
        s.latest_at_or_before(ts("2030-01-01T00:00:00Z")),
        Some(ts("2030-01-01T00:00:00Z"))
    );
    assert_eq!(
        s.latest_at_or_before(ts("2030-01-01T00:00:15Z")),
        Some(ts("2030-01-01T00:00:10Z"))
    );
    assert_eq!(
        s.latest_at_or_before(ts("2031-01-01T00:00:00Z")),
        Some(ts("2030-01-01T00:00:20Z"))
    );
    let c = sched("0 9 * * *");
    assert_eq!(
        c.latest_at_or_before(ts("2030-01-02T08:00:00Z")),
        Some(ts("2030-01-01T09:00:00Z"))
    );
}

#[test]
fn exact_intervals_from_kala_tests() {
    let at = |s: &str, k| match sched(s) {
        Schedule::Iso(i) => i.nth(k).unwrap(),
        Schedule::Cron(_) => unreachable!(),
    };
    let base = ts("2031-01-02T00:00:00Z");
    let secs = |s: &str| at(s, 1).duration_since(base).as_secs();
    assert_eq!(secs("R/2031-01-02T00:00:00Z/P1DT10M10S"), 24 * 3600 + 610);
    assert_eq!(secs("R/2031-01-02T00:00:00Z/PT10M10S"), 610);
    assert_eq!(secs("R/2031-01-02T00:00:00Z/P1DT10S"), 86_410);
    assert_eq!(secs("R/2031-01-02T00:00:00Z/P1Y"), 365 * 86_400);
    assert_eq!(secs("R/2031-01-02T00:00:00Z/P1Y1D"), 366 * 86_400);
    assert_eq!(secs("R/2031-01-02T00:00:00Z/P2M"), 59 * 86_400);
    assert_eq!(secs("R/2031-01-02T00:00:00Z/P1W"), 7 * 86_400);
}

#[test]
fn months_clamp_to_the_end_of_the_month_and_never_drift() {
    assert_eq!(
        runs("R/2030-01-31T09:00:00Z/P1M", 5),
        [
            "2030-01-31T09:00:00Z",
            "2030-02-28T09:00:00Z",
            "2030-03-31T09:00:00Z",
            "2030-04-30T09:00:00Z",
            "2030-05-31T09:00:00Z"
        ]
    );
    assert_eq!(
        runs("R/2032-01-31T00:00:00Z/P1M", 2)[1],
        "2032-02-29T00:00:00Z"
    );
    assert_eq!(
        runs("R/2030-07-31T00:00:00Z/P1M", 4),
        [
            "2030-07-31T00:00:00Z",
            "2030-08-31T00:00:00Z",
            "2030-09-30T00:00:00Z",
            "2030-10-31T00:00:00Z"
        ]
    );
    assert_eq!(
        runs("R/2032-02-29T00:00:00Z/P1Y", 5)[1..],
        [
            "2033-02-28T00:00:00Z",
            "2034-02-28T00:00:00Z",
            "2035-02-28T00:00:00Z",
            "2036-02-29T00:00:00Z"
        ]
    );
}

#[test]
fn offsets_are_fixed_and_days_keep_wall_time_in_a_zone() {
    // A written offset is a fixed zone: no DST.
    assert_eq!(
        runs("R/2030-03-09T14:09:00-08:00/P1D", 2)[1],
        "2030-03-10T22:09:00Z"
    );
    // With the zone, P1D keeps the wall-clock time across DST; PT24H does not.
    let la = Zone::get("America/Los_Angeles").unwrap();
    let daily = Schedule::parse_in("R/2030-03-09T14:09:00/P1D", Some(&la)).unwrap();
    let hourly24 = Schedule::parse_in("R/2030-03-09T14:09:00/PT24H", Some(&la)).unwrap();
    let d: Vec<_> = daily
        .occurrences()
        .take(2)
        .map(|t| t.to_zoned(la.tz().clone()).datetime().to_string())
        .collect();
    let h: Vec<_> = hourly24
        .occurrences()
        .take(2)
        .map(|t| t.to_zoned(la.tz().clone()).datetime().to_string())
        .collect();
    assert_eq!(d, ["2030-03-09T14:09:00", "2030-03-10T14:09:00"]);
    assert_eq!(h, ["2030-03-09T14:09:00", "2030-03-10T15:09:00"]);
}

#[test]
fn dst_gap_runs_at_the_first_instant_after_it_berlin() {
    // 2030-03-31 02:00 CET jumps to 03:00 CEST.
    assert_eq!(
        runs("R/2030-03-29T02:30:00[Europe/Berlin]/P1D", 4),
        [
            "2030-03-29T01:30:00Z",
            "2030-03-30T01:30:00Z",
            "2030-03-31T01:00:00Z",
            "2030-04-01T00:30:00Z"
        ]
    );
}

#[test]
fn dst_fold_runs_once_berlin() {
    // 2030-10-27 03:00 CEST falls back to 02:00 CET: 02:30 happens twice.
    assert_eq!(
        runs("R/2030-10-26T02:30:00[Europe/Berlin]/P1D", 3),
        [
            "2030-10-26T00:30:00Z",
            "2030-10-27T00:30:00Z",
            "2030-10-28T01:30:00Z"
        ]
    );
}

#[test]
fn dst_lord_howe_half_hour_shift() {
    // 2030-10-06 02:00 (+10:30) jumps to 02:30 (+11:00).
    assert_eq!(
        runs("R/2030-10-05T02:15:00[Australia/Lord_Howe]/P1D", 3),
        [
            "2030-10-04T15:45:00Z",
            "2030-10-05T15:30:00Z",
            "2030-10-06T15:15:00Z"
        ]
    );
    // 2030-04-07 02:00 (+11:00) falls back to 01:30 (+10:30): 01:45 twice.
    assert_eq!(
        runs("R/2030-04-06T01:45:00[Australia/Lord_Howe]/P1D", 3),
        [
            "2030-04-05T14:45:00Z",
            "2030-04-06T14:45:00Z",
            "2030-04-07T15:15:00Z"
        ]
    );
}

#[test]
fn cron_dst_new_york() {
    // 2030-03-10 02:00 EST jumps to 03:00 EDT: 02:30 runs at 03:00 EDT.
    let s = sched("CRON_TZ=America/New_York 30 2 * * *");
    let got: Vec<_> = s
        .occurrences_after(ts("2030-03-09T12:00:00Z"))
        .take(2)
        .map(|t| t.to_string())
        .collect();
    assert_eq!(got, ["2030-03-10T07:00:00Z", "2030-03-11T06:30:00Z"]);
    // 2030-11-03 02:00 EDT falls back to 01:00 EST: 01:30 runs once.
    let s = sched("CRON_TZ=America/New_York 30 1 * * *");
    let got: Vec<_> = s
        .occurrences_after(ts("2030-11-02T12:00:00Z"))
        .take(2)
        .map(|t| t.to_string())
        .collect();
    assert_eq!(got, ["2030-11-03T05:30:00Z", "2030-11-04T06:30:00Z"]);
}

#[test]
fn cron_five_and_six_fields() {
    let s = sched("0 9 * * 1-5");
    // 2030-01-05 is a Saturday; next weekday 09:00 is Monday the 7th.
    assert_eq!(
        s.next_after(ts("2030-01-05T12:00:00Z")),
        Some(ts("2030-01-07T09:00:00Z"))
    );
    let s = sched("*/10 * * * * *");
    assert_eq!(
        s.next_after(ts("2030-01-01T00:00:01Z")),
        Some(ts("2030-01-01T00:00:10Z"))
    );
    // Sunday is 0 and 7, as in standard cron.
    assert_eq!(
        sched("0 0 * * 0").next_after(ts("2030-01-01T00:00:00Z")),
        Some(ts("2030-01-06T00:00:00Z"))
    );
    assert_eq!(
        sched("0 0 * * 7").next_after(ts("2030-01-01T00:00:00Z")),
        Some(ts("2030-01-06T00:00:00Z"))
    );
    // Rare but possible: only leap days.
    assert_eq!(
        sched("0 0 29 2 *").next_after(ts("2030-01-01T00:00:00Z")),
        Some(ts("2032-02-29T00:00:00Z"))
    );
    let berlin = Zone::get("Europe/Berlin").unwrap();
    let s = Schedule::parse_in("0 9 * * *", Some(&berlin)).unwrap();
    assert_eq!(
        s.next_after(ts("2030-07-01T00:00:00Z")),
        Some(ts("2030-07-01T07:00:00Z"))
    );
}

#[test]
fn describe_in_words() {
    assert_eq!(
        sched("R2/2030-01-01T00:00:00Z/PT10S").describe(),
        "every 10 seconds from 2030-01-01T00:00:00Z, 3 runs"
    );
    assert_eq!(
        sched("R0/2030-01-01T00:00:00Z/").describe(),
        "once at 2030-01-01T00:00:00Z"
    );
}

fn arb_duration() -> impl Strategy<Value = String> {
    prop_oneof![
        (1i64..60).prop_map(|w| format!("P{w}W")),
        (0i64..3, 0i64..14, 0i64..40, 0i64..50, 0i64..90, 0i64..90)
            .prop_filter("non-zero", |t| *t != (0, 0, 0, 0, 0, 0))
            .prop_map(|(y, mo, d, h, mi, s)| {
                let mut out = String::from("P");
                for (v, c) in [(y, 'Y'), (mo, 'M'), (d, 'D')] {
                    if v > 0 {
                        out.push_str(&format!("{v}{c}"));
                    }
                }
                if h + mi + s > 0 {
                    out.push('T');
                    for (v, c) in [(h, 'H'), (mi, 'M'), (s, 'S')] {
                        if v > 0 {
                            out.push_str(&format!("{v}{c}"));
                        }
                    }
                }
                out
            }),
    ]
}

fn arb_start() -> impl Strategy<Value = String> {
    let zones = prop_oneof![
        Just(String::new()),
        Just("Z".to_string()),
        (-14i32..=14, prop_oneof![Just(0), Just(30), Just(45)]).prop_map(|(h, m)| {
            format!("{}{:02}:{:02}", if h < 0 { '-' } else { '+' }, h.abs(), m)
        }),
        prop_oneof![
            Just("[Europe/Berlin]"),
            Just("[America/New_York]"),
            Just("[Australia/Lord_Howe]"),
            Just("[UTC]")
        ]
        .prop_map(str::to_string),
    ];
    (
        1970i32..2200,
        1u8..=12,
        1u8..=28,
        0u8..24,
        0u8..60,
        0u8..60,
        prop::option::of(0u32..1_000_000_000),
        zones,
    )
        .prop_map(|(y, mo, d, h, mi, s, ns, z)| {
            let frac = ns.map(|n| format!(".{n:09}")).unwrap_or_default();
            format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{frac}{z}")
        })
}

fn arb_schedule() -> impl Strategy<Value = String> {
    (prop::option::of(0u64..30), arb_start(), arb_duration()).prop_map(|(r, s, d)| match r {
        None => format!("R/{s}/{d}"),
        Some(n) => format!("R{n}/{s}/{d}"),
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn display_round_trips(text in arb_schedule()) {
        let s = Schedule::parse(&text).unwrap();
        let again = Schedule::parse(&s.to_string()).unwrap();
        prop_assert_eq!(&again, &s);
        prop_assert_eq!(again.to_string(), s.to_string());
    }

    #[test]
    fn occurrences_strictly_increase_and_repeat_counts_hold(text in arb_schedule()) {
        let s = Schedule::parse(&text).unwrap();
        let occ: Vec<Timestamp> = s.occurrences().take(40).collect();
        for w in occ.windows(2) {
            prop_assert!(w[0] < w[1], "{} then {}", w[0], w[1]);
        }
        if let Some(max) = s.max_runs() {
            prop_assert_eq!(occ.len() as u64, max.min(40));
        } else {
            prop_assert_eq!(occ.len(), 40);
        }
    }

    #[test]
    fn next_after_agrees_with_iteration(text in arb_schedule(), k in 0usize..30, frac in 0.0f64..1.0) {
        let s = Schedule::parse(&text).unwrap();
        let occ: Vec<Timestamp> = s.occurrences().take(32).collect();
        if k + 1 < occ.len() {
            let gap = occ[k + 1].as_nanosecond() - occ[k].as_nanosecond();
            let t = Timestamp::from_nanosecond(occ[k].as_nanosecond() + (gap as f64 * frac) as i128).unwrap();
            let expect = if t < occ[k + 1] { occ[k + 1] } else { occ[k + 2] };
            prop_assert_eq!(s.next_after(t), Some(expect));
        }
    }

    #[test]
    fn parser_never_panics(text in "\\PC{0,40}") {
        let _ = Schedule::parse(&text);
    }

    #[test]
    fn duration_round_trips(text in arb_duration()) {
        let d = Duration::parse(&text).unwrap();
        prop_assert_eq!(Duration::parse(&d.to_string()).unwrap(), d);
    }
}
