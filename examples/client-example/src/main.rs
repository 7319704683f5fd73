//! Creates a job on a running kala-server, waits for its first run and
//! prints its output:
//!
//! ```sh
//! cargo run --release -p kala-server -- serve &      # or any kala-server
//! cargo run -p client-example                        # KALA_URL, KALA_TOKEN to change
//! ```

use std::process::ExitCode;
use std::time::Duration;

use kala_client::{Client, Job};

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("client-example: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), kala_client::Error> {
    let url = std::env::var("KALA_URL").unwrap_or_else(|_| "http://127.0.0.1:8000".into());
    let mut kala = Client::builder(&url);
    if let Ok(token) = std::env::var("KALA_TOKEN") {
        kala = kala.token(token);
    }
    let kala = kala.build()?;

    // A one-off job (no schedule): it runs once, now.
    let job = Job::new("client example", "echo hello from a kala job");
    let id = kala.create(&job).await?;
    println!("created job {id} on {url}");

    let run = loop {
        if let Some(run) = kala.runs(&id, Some(1)).await?.pop() {
            break run;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!(
        "first run: {:?} at {} (exit code {:?})",
        run.outcome, run.ran_at, run.exit_code
    );
    print!("output: {}", run.output);
    kala.delete(&id).await?;
    Ok(())
}
