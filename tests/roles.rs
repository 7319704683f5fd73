//! Tokens with roles and owner scopes, against a real `kala-server`:
//! every route × every role (and an owner-scoped token) gets the expected
//! status, and a refused request changes nothing in the store. Tokens
//! live in the config file as hashes only, reload on SIGHUP, and
//! `kala-server token new` makes blocks the server takes.

mod common;

use std::path::Path;

use common::{BIN, Server, client, eventually};
use serde_json::{Value, json};

/// A role's token, its name, and the block for the config file.
struct Tok {
    name: &'static str,
    token: String,
}

fn block(name: &str, role: &str, token: &str, owners: Option<&[&str]>) -> String {
    let mut b = format!(
        "[[tokens]]\nname = {name:?}\nrole = {role:?}\nhash = {:?}\n",
        kala_api::hash_of(token)
    );
    if let Some(o) = owners {
        let list: Vec<String> = o.iter().map(|x| format!("{x:?}")).collect();
        b += &format!("owners = [{}]\n", list.join(", "));
    }
    b
}

fn write_config(path: &Path, blocks: &[String]) {
    std::fs::write(path, blocks.join("\n")).expect("write config");
}

async fn call(
    c: &reqwest::Client,
    s: &Server,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut r = c.request(m, s.url(path));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(b) = body {
        r = r.json(b);
    }
    let resp = r
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// What the store holds: every job as the admin sees it, without stats.
async fn snapshot(c: &reqwest::Client, s: &Server, admin: &str) -> Value {
    let (st, v) = call(c, s, Some(admin), "GET", "/api/v1/job/?stats=false", None).await;
    assert_eq!(st, 200, "{v}");
    v["jobs"].clone()
}

fn remote_job(name: &str, owner: &str) -> Value {
    json!({
        "name": name,
        "owner": owner,
        "type": 1,
        "schedule": common::starts_in(3600, "R", "PT1H"),
        "remote_properties": {"url": "http://127.0.0.1:9/", "timeout": 1}
    })
}

#[tokio::test]
async fn every_route_for_every_role() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("kala.toml");
    let roles = [
        ("reader", "reader"),
        ("operator", "operator"),
        ("editor", "editor"),
        ("admin", "admin"),
    ];
    let mut toks: Vec<Tok> = Vec::new();
    let mut blocks = Vec::new();
    for (name, role) in roles {
        let token = format!("tok-{name}-{}", uuid::Uuid::new_v4().simple());
        blocks.push(block(name, role, &token, None));
        toks.push(Tok { name, token });
    }
    let team_token = format!("tok-team-{}", uuid::Uuid::new_v4().simple());
    blocks.push(block(
        "team-a-editor",
        "editor",
        &team_token,
        Some(&["team-a"]),
    ));
    write_config(&config, &blocks);
    let text = std::fs::read_to_string(&config).expect("read");
    for t in &toks {
        assert!(!text.contains(&t.token), "the config file holds a token");
    }
    let s = Server::start(dir.path(), &["--config", config.to_str().expect("utf8")]);
    let c = client();
    let admin = toks[3].token.clone();
    let by = |n: &str| {
        toks.iter()
            .find(|t| t.name == n)
            .map(|t| t.token.clone())
            .expect("token")
    };

    // Jobs to act on: one of team-a, one of team-b.
    let (st, a) = call(
        &c,
        &s,
        Some(&admin),
        "POST",
        "/api/v1/job/",
        Some(&remote_job("a", "team-a")),
    )
    .await;
    assert_eq!(st, 201, "{a}");
    let a = a["id"].as_str().expect("id").to_string();
    let (st, b) = call(
        &c,
        &s,
        Some(&admin),
        "POST",
        "/api/v1/job/",
        Some(&remote_job("b", "team-b")),
    )
    .await;
    assert_eq!(st, 201, "{b}");
    let b = b["id"].as_str().expect("id").to_string();

    // No credential, or a wrong one: 401 everywhere under /api/v1 and
    // on /metrics; /healthz and the OpenAPI document stay open.
    for (m, p) in [
        ("GET", "/api/v1/job/".to_string()),
        ("GET", format!("/api/v1/job/{a}/")),
        ("POST", format!("/api/v1/job/start/{a}/")),
        ("DELETE", "/api/v1/job/all/".to_string()),
        ("GET", "/metrics".to_string()),
        ("GET", "/api/v1/whoami/".to_string()),
    ] {
        for t in [
            None,
            Some("wrong"),
            Some(kala_api::hash_of(&admin).as_str()),
        ] {
            let (st, v) = call(&c, &s, t, m, &p, None).await;
            assert_eq!(st, 401, "{m} {p} with {t:?}: {v}");
        }
    }
    for p in ["/healthz", "/api/v1/openapi.json"] {
        assert_eq!(call(&c, &s, None, "GET", p, None).await.0, 200, "{p}");
    }

    // The table: (method, path, body, the lowest role that may).
    let notify = json!([{"webhook": "http://127.0.0.1:9/hook", "on": ["failure"]}]);
    let cases: Vec<(&str, String, Option<Value>, &str)> = vec![
        ("GET", "/api/v1/job/".into(), None, "reader"),
        ("GET", format!("/api/v1/job/{a}/"), None, "reader"),
        ("GET", format!("/api/v1/job/stats/{a}/"), None, "reader"),
        ("GET", format!("/api/v1/job/{a}/runs/"), None, "reader"),
        ("GET", "/api/v1/stats/".into(), None, "reader"),
        ("GET", "/api/v1/cluster/".into(), None, "reader"),
        ("GET", "/api/v1/whoami/".into(), None, "reader"),
        ("GET", "/metrics".into(), None, "reader"),
        (
            "POST",
            "/api/v1/schedule/preview/".into(),
            Some(json!({"schedule": "R2/2030-01-01T00:00:00Z/PT1H"})),
            "reader",
        ),
        (
            "POST",
            format!("/api/v1/job/disable/{a}/"),
            None,
            "operator",
        ),
        ("POST", format!("/api/v1/job/enable/{a}/"), None, "operator"),
        (
            "POST",
            "/api/v1/job/".into(),
            Some(remote_job("new", "team-a")),
            "editor",
        ),
        (
            "PUT",
            format!("/api/v1/job/{a}/notify/"),
            Some(notify.clone()),
            "editor",
        ),
        (
            "POST",
            "/api/v1/job/".into(),
            Some(
                json!({"name": "cmd", "command": "true", "schedule": common::starts_in(3600, "R", "PT1H")}),
            ),
            "admin",
        ),
    ];
    let rank = |r: &str| {
        ["reader", "operator", "editor", "admin"]
            .iter()
            .position(|x| *x == r)
            .expect("role")
    };
    for (method, path, body, least) in &cases {
        for t in &toks {
            let before = snapshot(&c, &s, &admin).await;
            let (st, v) = call(&c, &s, Some(&t.token), method, path, body.as_ref()).await;
            if rank(t.name) >= rank(least) {
                assert!(
                    (200..300).contains(&st),
                    "{} {method} {path}: {st} {v}",
                    t.name
                );
                if *method == "POST" && path == "/api/v1/job/" {
                    // Leave the store as it was for the next role.
                    let id = v["id"].as_str().expect("id");
                    let (st, _) = call(
                        &c,
                        &s,
                        Some(&admin),
                        "DELETE",
                        &format!("/api/v1/job/{id}/"),
                        None,
                    )
                    .await;
                    assert_eq!(st, 204);
                }
            } else {
                assert_eq!(st, 403, "{} {method} {path}: {v}", t.name);
                let msg = v["error"].as_str().unwrap_or_default();
                assert!(
                    msg.contains("role") && msg.contains(t.name),
                    "{} {method} {path}: the 403 names the role: {msg}",
                    t.name
                );
                assert_eq!(
                    snapshot(&c, &s, &admin).await,
                    before,
                    "{} {method} {path} was refused but changed the store",
                    t.name
                );
            }
        }
    }

    // Delete: editors and admins; a reader and an operator are refused
    // with nothing deleted.
    for t in &toks {
        let (st, v) = call(
            &c,
            &s,
            Some(&admin),
            "POST",
            "/api/v1/job/",
            Some(&remote_job("del", "team-b")),
        )
        .await;
        assert_eq!(st, 201, "{v}");
        let id = v["id"].as_str().expect("id").to_string();
        let (st, v) = call(
            &c,
            &s,
            Some(&t.token),
            "DELETE",
            &format!("/api/v1/job/{id}/"),
            None,
        )
        .await;
        let want = if rank(t.name) >= rank("editor") {
            204
        } else {
            403
        };
        assert_eq!(st, want, "{} DELETE: {v}", t.name);
        let (st, _) = call(
            &c,
            &s,
            Some(&admin),
            "GET",
            &format!("/api/v1/job/{id}/"),
            None,
        )
        .await;
        assert_eq!(st, if want == 204 { 404 } else { 200 }, "{}", t.name);
        if want == 403 {
            call(
                &c,
                &s,
                Some(&admin),
                "DELETE",
                &format!("/api/v1/job/{id}/"),
                None,
            )
            .await;
        }
    }

    // The owner-scoped editor: sees and changes team-a's job only.
    let (st, list) = call(&c, &s, Some(&team_token), "GET", "/api/v1/job/", None).await;
    assert_eq!(st, 200);
    let ids: Vec<&String> = list["jobs"].as_object().expect("jobs").keys().collect();
    assert_eq!(ids, vec![&a], "the scoped token lists only team-a's jobs");
    let (st, page) = call(
        &c,
        &s,
        Some(&team_token),
        "GET",
        "/api/v1/job/?limit=1",
        None,
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(
        page["jobs"]
            .as_object()
            .expect("jobs")
            .keys()
            .collect::<Vec<_>>(),
        vec![&a]
    );
    for (m, p, body) in [
        ("GET", format!("/api/v1/job/{b}/"), None),
        ("GET", format!("/api/v1/job/stats/{b}/"), None),
        ("GET", format!("/api/v1/job/{b}/runs/"), None),
        ("POST", format!("/api/v1/job/disable/{b}/"), None),
        ("POST", format!("/api/v1/job/start/{b}/"), None),
        (
            "PUT",
            format!("/api/v1/job/{b}/notify/"),
            Some(notify.clone()),
        ),
        ("DELETE", format!("/api/v1/job/{b}/"), None),
    ] {
        let before = snapshot(&c, &s, &admin).await;
        let (st, v) = call(&c, &s, Some(&team_token), m, &p, body.as_ref()).await;
        assert_eq!(
            st, 404,
            "team-a editor {m} {p}: another owner's job is not there: {v}"
        );
        assert_eq!(snapshot(&c, &s, &admin).await, before, "{m} {p}");
    }
    let (st, _) = call(
        &c,
        &s,
        Some(&team_token),
        "POST",
        &format!("/api/v1/job/disable/{a}/"),
        None,
    )
    .await;
    assert_eq!(st, 204);
    let before = snapshot(&c, &s, &admin).await;
    let (st, v) = call(
        &c,
        &s,
        Some(&team_token),
        "POST",
        "/api/v1/job/",
        Some(&remote_job("x", "team-b")),
    )
    .await;
    assert_eq!(st, 403, "{v}");
    assert!(
        v["error"].as_str().unwrap_or_default().contains("team-b"),
        "{v}"
    );
    assert_eq!(snapshot(&c, &s, &admin).await, before);
    // Without an owner, the token's one owner is given.
    let mut unowned = remote_job("mine", "");
    unowned["owner"] = Value::Null;
    let (st, v) = call(
        &c,
        &s,
        Some(&team_token),
        "POST",
        "/api/v1/job/",
        Some(&unowned),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    let mine = v["id"].as_str().expect("id").to_string();
    let (_, j) = call(
        &c,
        &s,
        Some(&admin),
        "GET",
        &format!("/api/v1/job/{mine}/"),
        None,
    )
    .await;
    assert_eq!(j["job"]["owner"], "team-a");
    // A parent of another owner is, to it, no job.
    let mut child = remote_job("child", "team-a");
    child["parent_jobs"] = json!([b]);
    child.as_object_mut().expect("obj").remove("schedule");
    let (st, v) = call(
        &c,
        &s,
        Some(&team_token),
        "POST",
        "/api/v1/job/",
        Some(&child),
    )
    .await;
    assert_eq!(st, 400, "{v}");
    // Deleting a job would delete its only-parented child of another
    // owner: refused, nothing deleted.
    let mut theirs = remote_job("theirs", "team-b");
    theirs["parent_jobs"] = json!([a]);
    theirs.as_object_mut().expect("obj").remove("schedule");
    let (st, v) = call(&c, &s, Some(&admin), "POST", "/api/v1/job/", Some(&theirs)).await;
    assert_eq!(st, 201, "{v}");
    let theirs = v["id"].as_str().expect("id").to_string();
    let before = snapshot(&c, &s, &admin).await;
    let (st, v) = call(
        &c,
        &s,
        Some(&team_token),
        "DELETE",
        &format!("/api/v1/job/{a}/"),
        None,
    )
    .await;
    assert_eq!(st, 403, "{v}");
    assert!(
        v["error"].as_str().unwrap_or_default().contains(&theirs),
        "{v}"
    );
    assert_eq!(snapshot(&c, &s, &admin).await, before);
    let (st, _) = call(
        &c,
        &s,
        Some(&admin),
        "DELETE",
        &format!("/api/v1/job/{theirs}/"),
        None,
    )
    .await;
    assert_eq!(st, 204);
    // Its stats count its owners' jobs only.
    let (_, mine_stats) = call(&c, &s, Some(&team_token), "GET", "/api/v1/stats/", None).await;
    let (_, all_stats) = call(&c, &s, Some(&admin), "GET", "/api/v1/stats/", None).await;
    assert_eq!(mine_stats["Stats"]["jobs"], 2, "a and mine: {mine_stats}");
    assert!(
        all_stats["Stats"]["jobs"].as_u64().unwrap_or(0) > 2,
        "{all_stats}"
    );
    let (st, who) = call(&c, &s, Some(&team_token), "GET", "/api/v1/whoami/", None).await;
    assert_eq!(st, 200);
    assert_eq!(
        who,
        json!({"name": "team-a-editor", "role": "editor", "owners": ["team-a"], "via": "token", "commands_need": "admin"})
    );

    // Delete all: only an admin; nothing deleted otherwise.
    for t in toks.iter().take(3) {
        let before = snapshot(&c, &s, &admin).await;
        let (st, v) = call(&c, &s, Some(&t.token), "DELETE", "/api/v1/job/all/", None).await;
        assert_eq!(st, 403, "{}: {v}", t.name);
        assert_eq!(snapshot(&c, &s, &admin).await, before);
    }
    let (st, _) = call(
        &c,
        &s,
        Some(&by("admin")),
        "DELETE",
        "/api/v1/job/all/",
        None,
    )
    .await;
    assert_eq!(st, 204);
    assert_eq!(snapshot(&c, &s, &admin).await, json!({}));
    s.stop();
}

#[tokio::test]
async fn tokens_reload_on_sighup_and_editors_may_get_commands() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("kala.toml");
    write_config(&config, &[block("old", "editor", "old-token", None)]);
    let s = Server::start(
        dir.path(),
        &[
            "--config",
            config.to_str().expect("utf8"),
            "--allow-commands",
            "editor",
        ],
    );
    let c = client();
    let cmd =
        json!({"name": "cmd", "command": "true", "schedule": common::starts_in(3600, "R", "PT1H")});
    let (st, v) = call(
        &c,
        &s,
        Some("old-token"),
        "POST",
        "/api/v1/job/",
        Some(&cmd),
    )
    .await;
    assert_eq!(st, 201, "--allow-commands editor: {v}");

    // A token new makes a block the server takes.
    let out = std::process::Command::new(BIN)
        .args([
            "token", "new", "--name", "ci", "--role", "operator", "--owner", "team-a",
        ])
        .output()
        .expect("token new");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("utf8");
    let token = text
        .lines()
        .filter_map(|l| l.strip_prefix("# "))
        .find(|l| l.starts_with("kala_"))
        .expect("the token line")
        .to_string();
    let new_block: String = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        !new_block.contains(&token),
        "the block holds the hash, not the token"
    );
    assert!(new_block.contains("owners = [\"team-a\"]"), "{new_block}");
    assert_eq!(
        call(&c, &s, Some(&token), "GET", "/api/v1/whoami/", None)
            .await
            .0,
        401
    );

    write_config(&config, &[new_block + "\n"]);
    // SAFETY-free: kill(1) is the documented way to send SIGHUP.
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &s.pid().to_string()])
        .status()
        .expect("kill -HUP");
    assert!(hup.success());
    let who = eventually(10, || async {
        let (st, v) = call(&c, &s, Some(&token), "GET", "/api/v1/whoami/", None).await;
        (st == 200).then_some(v)
    })
    .await;
    assert_eq!(who["name"], "ci");
    assert_eq!(who["role"], "operator");
    assert_eq!(
        call(&c, &s, Some("old-token"), "GET", "/api/v1/job/", None)
            .await
            .0,
        401,
        "the removed token is refused"
    );

    // A broken file keeps the tokens in use.
    std::fs::write(
        &config,
        "[[tokens]]\nname = \"x\"\nrole = \"root\"\nhash = \"nope\"\n",
    )
    .expect("write");
    std::process::Command::new("kill")
        .args(["-HUP", &s.pid().to_string()])
        .status()
        .expect("kill -HUP");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        call(&c, &s, Some(&token), "GET", "/api/v1/whoami/", None)
            .await
            .0,
        200
    );
    s.stop();
}

#[test]
fn a_config_file_with_a_bad_token_block_stops_the_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("kala.toml");
    std::fs::write(
        &config,
        "[[tokens]]\nname = \"ci\"\nrole = \"operator\"\nhash = \"plain-token\"\n",
    )
    .expect("write");
    let out = std::process::Command::new(BIN)
        .args([
            "serve",
            "--port",
            "0",
            "--config",
            config.to_str().expect("utf8"),
        ])
        .arg("--bolt-path")
        .arg(dir.path())
        .output()
        .expect("serve");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tokens.ci.hash"), "{err}");
}

/// A request that started before a reload finishes with the role it
/// started with: a start (which waits for the run, as Kala's does) by a
/// token the reload removes still answers 204; the next request by it
/// is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_keeps_its_role_across_a_reload() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("kala.toml");
    write_config(
        &config,
        &[
            block("root", "admin", "admin-token", None),
            block("going", "operator", "going-token", None),
        ],
    );
    let s = Server::start(dir.path(), &["--config", config.to_str().expect("utf8")]);
    let c = client();
    let slow = json!({"name": "slow", "command": "sleep 2", "schedule": common::starts_in(3600, "R", "PT1H")});
    let (st, v) = call(
        &c,
        &s,
        Some("admin-token"),
        "POST",
        "/api/v1/job/",
        Some(&slow),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    let id = v["id"].as_str().expect("id").to_string();
    let started = {
        let (c, url) = (c.clone(), s.url(&format!("/api/v1/job/start/{id}/")));
        tokio::spawn(async move {
            c.post(url)
                .bearer_auth("going-token")
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    write_config(&config, &[block("root", "admin", "admin-token", None)]);
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &s.pid().to_string()])
        .status()
        .expect("kill -HUP");
    assert!(hup.success());
    eventually(10, || async {
        (call(&c, &s, Some("going-token"), "GET", "/api/v1/whoami/", None)
            .await
            .0
            == 401)
            .then_some(())
    })
    .await;
    let status = started.await.expect("join").expect("the start answered");
    assert_eq!(
        status, 204,
        "the start begun before the reload finished as an operator's"
    );
    s.stop();
}
