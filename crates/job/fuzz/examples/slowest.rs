//! Replays a corpus through the create path and prints the slowest input:
//! `cargo run --release --example slowest -- corpus/create`.
fn main() {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "corpus/create".into());
    let mut worst = (std::time::Duration::ZERO, std::path::PathBuf::new());
    let mut n = 0usize;
    for entry in std::fs::read_dir(&dir).expect("corpus directory").flatten() {
        let Ok(data) = std::fs::read(entry.path()) else {
            continue;
        };
        let t = std::time::Instant::now();
        kala_create_fuzz::create_path(&data);
        let took = t.elapsed();
        n += 1;
        if took > worst.0 {
            worst = (took, entry.path());
        }
    }
    println!("{n} inputs; slowest {:?}: {}", worst.0, worst.1.display());
}
