//! A full disk under the embedded store, for real: a 4 MiB tmpfs mounted
//! by the test (CI runs as root; a test that cannot mount fails). Writes
//! answer 507 and `/healthz` 503 while the disk is full, and once space is
//! freed the store takes writes again by itself — no restart — and nothing
//! that got a 2xx is lost.

mod common;

use std::process::Command;

use common::*;
use serde_json::json;

struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_gives_507_then_recovers_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(&mnt)
        .status()
        .expect("run mount");
    assert!(ok.success(), "this test mounts a tmpfs and needs root");
    let _mount = Mount(mnt.clone());
    let data = mnt.join("data");
    let s = Server::start(&data, &[]);
    let c = client();
    let first = create(
        &c,
        &s,
        json!({"name": "before", "command": "true", "schedule": starts_in(3600, "R", "PT1H")}),
    )
    .await;
    // Fill what is left of the disk.
    let filler = mnt.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
    }
    // Writes now fail (redb may still have free pages for a few).
    let big = "x".repeat(200_000);
    let mut refused = None;
    let mut acknowledged = vec![first];
    for k in 0..200 {
        let body = json!({"name": format!("during {k}"), "command": "true", "owner": big, "schedule": starts_in(3600, "R", "PT1H")});
        let r = req(&c, "POST", &s.url("/api/v1/job/"), Some(&body.to_string())).await;
        match r.status {
            201 => acknowledged.push(r.json()["id"].as_str().unwrap().to_string()),
            507 => {
                refused = Some(r);
                break;
            }
            other => panic!("unexpected {other}: {}", r.text()),
        }
    }
    let r = refused.expect("no write was refused on a full disk");
    let err = r.json()["error"].as_str().unwrap_or_default().to_string();
    assert!(err.starts_with("storage full"), "{err}");
    let h = req(&c, "GET", &s.url("/healthz"), None).await;
    assert_eq!(h.status, 503, "{}", h.text());
    assert!(
        h.json()["problem"]
            .as_str()
            .unwrap_or_default()
            .contains("disk full")
    );
    let del = req(
        &c,
        "DELETE",
        &s.url(&format!("/api/v1/job/{}/", acknowledged[0])),
        None,
    )
    .await;
    assert!(
        matches!(del.status, 507 | 503),
        "delete on a full disk: {} {}",
        del.status,
        del.text()
    );
    // Free the space: the store recovers without a restart.
    std::fs::remove_file(&filler).unwrap();
    eventually(30, || {
        let (c, url) = (c.clone(), s.url("/healthz"));
        async move { (req(&c, "GET", &url, None).await.status == 200).then_some(()) }
    })
    .await;
    let after = create(
        &c,
        &s,
        json!({"name": "after", "command": "true", "schedule": starts_in(3600, "R", "PT1H")}),
    )
    .await;
    acknowledged.push(after);
    // Nothing acknowledged is lost across a restart.
    assert_eq!(s.stop(), Some(0));
    let s = Server::start(&data, &[]);
    let listed = req(&c, "GET", &s.url("/api/v1/job/?stats=false"), None)
        .await
        .json();
    for id in &acknowledged {
        assert!(
            listed["jobs"].get(id).is_some(),
            "job {id} got a 201 and is gone"
        );
    }
    assert_eq!(
        listed["jobs"].as_object().map(|m| m.len()),
        Some(acknowledged.len()),
        "only what got a 201 is there"
    );
    drop(s);
}
