use std::sync::Arc;
use std::time::Duration;

use kala::{Engine, Event, Job, JobType, SignedDuration, Timestamp};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The embedded file store, in ./kala-data (kala::store::postgres etc. with their features).
    let store = Arc::new(kala::store::redb::RedbStore::open_dir("kala-data")?);
    let engine = Engine::builder().store(store).build().await?;

    // A job kind of this program: an async function.
    engine.register_handler("greet", |job: Job| async move {
        Ok(format!("hello from {}", job.name))
    });

    // Three runs (R2: the first and two repeats), 2 s apart, from 1 s from now.
    let mut job = Job::new("greeter", "greet");
    job.job_type = JobType::InProcess; // the default, Local, runs `command` in a shell
    job.schedule = format!(
        "R2/{}/PT2S",
        Timestamp::now() + SignedDuration::from_secs(1)
    );
    let mut events = engine.subscribe();
    engine.create(job).await?;

    let mut finished = 0;
    while finished < 3 {
        if let Event::RunFinished(run) = events.recv().await? {
            finished += 1;
            println!("{:?}: {}", run.outcome, run.output.trim());
        }
    }
    engine.shutdown(Duration::from_secs(5)).await;
    Ok(())
}
