//! Times schedule parsing on adversarial cron expressions; prints the
//! slowest. `cargo run --release -p kala-schedule --example crontime`.
fn main() {
    let parts = [
        "*", ",", ",,", "0", "59", "31", "30", "29", "2", "12", "L", "W", "5#5", "1-5", "*/7",
        "5-3", "?", "0,", ",0", "1W", "LW", "7L", "*/0", "60", "32", "13", "8", "0-0", "FEB",
        "SUN#5",
    ];
    let mut seed = 0x2545F4914F6CDD1Du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut worst = (std::time::Duration::ZERO, String::new());
    for _ in 0..20_000 {
        let n = 5 + (next() % 2) as usize;
        let e: Vec<&str> = (0..n)
            .map(|_| parts[(next() % parts.len() as u64) as usize])
            .collect();
        let e = e.join(" ");
        let t = std::time::Instant::now();
        let _ = kala_schedule::Schedule::parse(&e);
        let took = t.elapsed();
        if took > worst.0 {
            worst = (took, e);
        }
    }
    println!("slowest of 20,000: {:?} in {:?}", worst.1, worst.0);
}
