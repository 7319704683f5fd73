//! JWT bearer tokens against a real `kala-server` with `--jwt-jwks`: the
//! test makes its own keys (Ed25519 and P-256 with ring, RSA with
//! openssl) and signs its own tokens. Valid RS256, ES256 and EdDSA tokens
//! get their claim's role; expired, not-yet-valid, wrong-audience,
//! wrong-issuer, wrong-key, `alg: none` and HMAC tokens get 401; a key
//! rotation in the JWKS file takes effect without a restart.

mod common;

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use common::{Server, client, eventually};
use ring::rand::SystemRandom;
use ring::signature::{self, KeyPair};
use serde_json::{Value, json};

/// A signing key and its public JWK.
enum Signer {
    Ed(signature::Ed25519KeyPair),
    Ec(signature::EcdsaKeyPair),
    Rsa(signature::RsaKeyPair),
}

struct Key {
    kid: String,
    signer: Signer,
    jwk: Value,
}

impl Key {
    fn ed25519(kid: &str) -> Key {
        let rng = SystemRandom::new();
        let pkcs8 = signature::Ed25519KeyPair::generate_pkcs8(&rng).expect("ed25519");
        let kp = signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("ed25519");
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "use": "sig",
            "x": B64.encode(kp.public_key().as_ref())});
        Key {
            kid: kid.into(),
            signer: Signer::Ed(kp),
            jwk,
        }
    }

    fn p256(kid: &str) -> Key {
        let rng = SystemRandom::new();
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).expect("p256");
        let kp = signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).expect("p256");
        let point = kp.public_key().as_ref();
        let jwk = json!({"kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256",
            "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65])});
        Key {
            kid: kid.into(),
            signer: Signer::Ec(kp),
            jwk,
        }
    }

    fn rsa(kid: &str, dir: &std::path::Path) -> Key {
        let pem = dir.join(format!("{kid}.pem"));
        let der = dir.join(format!("{kid}.der"));
        let ok = std::process::Command::new("openssl")
            .args([
                "genpkey",
                "-quiet",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
            ])
            .arg(&pem)
            .status()
            .expect("openssl genpkey (the openssl command is needed)");
        assert!(ok.success());
        let ok = std::process::Command::new("openssl")
            .args(["rsa", "-traditional", "-outform", "DER", "-in"])
            .arg(&pem)
            .arg("-out")
            .arg(&der)
            .status()
            .expect("openssl pkey");
        assert!(ok.success());
        let out = std::process::Command::new("openssl")
            .args(["rsa", "-noout", "-modulus", "-in"])
            .arg(&pem)
            .output()
            .expect("openssl rsa");
        let text = String::from_utf8(out.stdout).expect("utf8");
        let hex = text.trim().strip_prefix("Modulus=").expect("modulus");
        let n: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
            .collect();
        let kp = signature::RsaKeyPair::from_der(&std::fs::read(&der).expect("der")).expect("rsa");
        let jwk =
            json!({"kty": "RSA", "kid": kid, "alg": "RS256", "n": B64.encode(&n), "e": "AQAB"});
        Key {
            kid: kid.into(),
            signer: Signer::Rsa(kp),
            jwk,
        }
    }

    fn alg(&self) -> &'static str {
        match self.signer {
            Signer::Ed(_) => "EdDSA",
            Signer::Ec(_) => "ES256",
            Signer::Rsa(_) => "RS256",
        }
    }

    /// A compact JWS of `claims`, signed by this key with `header`'s
    /// fields over the default ones.
    fn sign(&self, claims: &Value, header: Option<Value>) -> String {
        let mut h = json!({"alg": self.alg(), "typ": "JWT", "kid": self.kid});
        if let Some(Value::Object(extra)) = header {
            for (k, v) in extra {
                h[k] = v;
            }
        }
        let input = format!(
            "{}.{}",
            B64.encode(h.to_string()),
            B64.encode(claims.to_string())
        );
        let rng = SystemRandom::new();
        let sig = match &self.signer {
            Signer::Ed(k) => k.sign(input.as_bytes()).as_ref().to_vec(),
            Signer::Ec(k) => k
                .sign(&rng, input.as_bytes())
                .expect("sign")
                .as_ref()
                .to_vec(),
            Signer::Rsa(k) => {
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &rng,
                    input.as_bytes(),
                    &mut sig,
                )
                .expect("sign");
                sig
            }
        };
        format!("{input}.{}", B64.encode(sig))
    }
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn claims(role: &str) -> Value {
    json!({"sub": "alice", "iss": "https://idp.test", "aud": "kala", "exp": now() + 300,
        "iat": now(), "kala_role": role})
}

fn write_jwks(path: &std::path::Path, keys: &[&Key]) {
    let set = json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()});
    // Written whole, then renamed: the server never reads half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, set.to_string()).expect("write jwks");
    std::fs::rename(&tmp, path).expect("rename jwks");
}

async fn status(
    c: &reqwest::Client,
    s: &Server,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut r = c.request(m, s.url(path)).bearer_auth(token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.expect("request");
    let st = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (
        st,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn jwts_are_checked_and_keys_rotate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let jwks = dir.path().join("jwks.json");
    let ed = Key::ed25519("ed-1");
    let ec = Key::p256("ec-1");
    let rsa = Key::rsa("rsa-1", dir.path());
    let stranger = Key::ed25519("ed-1"); // same kid, other key
    write_jwks(&jwks, &[&ed, &ec, &rsa]);
    let s = Server::start(
        dir.path(),
        &[
            "--jwt-jwks",
            jwks.to_str().expect("utf8"),
            "--jwt-issuer",
            "https://idp.test",
            "--jwt-audience",
            "kala",
            "--jwt-owners-claim",
            "teams",
        ],
    );
    let c = client();

    // Each algorithm, each with its role.
    for (key, role) in [(&ed, "reader"), (&ec, "operator"), (&rsa, "editor")] {
        let (st, who) = status(
            &c,
            &s,
            &key.sign(&claims(role), None),
            "GET",
            "/api/v1/whoami/",
            None,
        )
        .await;
        assert_eq!(st, 200, "{}: {who}", key.alg());
        assert_eq!(who["name"], "jwt:alice");
        assert_eq!(who["role"], role);
        assert_eq!(who["via"], "jwt");
    }
    // The role is enforced: a reader's JWT cannot create.
    let job = json!({"name": "x", "type": 1, "schedule": common::starts_in(3600, "R", "PT1H"),
        "remote_properties": {"url": "http://127.0.0.1:9/"}});
    let (st, v) = status(
        &c,
        &s,
        &ed.sign(&claims("reader"), None),
        "POST",
        "/api/v1/job/",
        Some(job.clone()),
    )
    .await;
    assert_eq!(st, 403, "{v}");
    // Owners from the claim.
    let mut scoped = claims("editor");
    scoped["teams"] = json!(["team-a"]);
    let (st, who) = status(
        &c,
        &s,
        &ec.sign(&scoped, None),
        "GET",
        "/api/v1/whoami/",
        None,
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(who["owners"], json!(["team-a"]));

    // Refusals: all 401.
    let mut expired = claims("admin");
    expired["exp"] = json!(now() - 3600);
    let mut early = claims("admin");
    early["nbf"] = json!(now() + 3600);
    let mut wrong_aud = claims("admin");
    wrong_aud["aud"] = json!("someone-else");
    let mut wrong_iss = claims("admin");
    wrong_iss["iss"] = json!("https://evil.test");
    let mut no_exp = claims("admin");
    no_exp.as_object_mut().expect("obj").remove("exp");
    let mut bad_role = claims("root");
    bad_role["kala_role"] = json!("root");
    let none_token = format!(
        "{}.{}.",
        B64.encode(json!({"alg": "none", "typ": "JWT"}).to_string()),
        B64.encode(claims("admin").to_string())
    );
    // HS256 "signed" with the RSA public key's bytes as the secret (the
    // classic key-confusion attack).
    let hs_input = format!(
        "{}.{}",
        B64.encode(json!({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}).to_string()),
        B64.encode(claims("admin").to_string())
    );
    let hmac_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, rsa.jwk.to_string().as_bytes());
    let hs_token = format!(
        "{hs_input}.{}",
        B64.encode(ring::hmac::sign(&hmac_key, hs_input.as_bytes()))
    );
    let mut tampered = ed.sign(&claims("reader"), None);
    let parts: Vec<&str> = tampered.split('.').collect();
    tampered = format!(
        "{}.{}.{}",
        parts[0],
        B64.encode(claims("admin").to_string()),
        parts[2]
    );
    for (what, token) in [
        ("expired", ed.sign(&expired, None)),
        ("not yet valid", ed.sign(&early, None)),
        ("wrong audience", ec.sign(&wrong_aud, None)),
        ("wrong issuer", rsa.sign(&wrong_iss, None)),
        ("no exp", ed.sign(&no_exp, None)),
        ("unknown role", ed.sign(&bad_role, None)),
        ("wrong key", stranger.sign(&claims("admin"), None)),
        (
            "unknown kid",
            ed.sign(&claims("admin"), Some(json!({"kid": "nope"}))),
        ),
        ("alg none", none_token),
        ("HS256 with the public key", hs_token),
        ("tampered claims", tampered),
        ("garbage", "a.b.c".to_string()),
    ] {
        let (st, v) = status(&c, &s, &token, "GET", "/api/v1/job/", None).await;
        assert_eq!(st, 401, "{what}: {v}");
    }

    // Rotation: the file now holds a new key only.
    let ed2 = Key::ed25519("ed-2");
    write_jwks(&jwks, &[&ed2]);
    eventually(15, || async {
        let (new, _) = status(
            &c,
            &s,
            &ed2.sign(&claims("admin"), None),
            "GET",
            "/api/v1/whoami/",
            None,
        )
        .await;
        let (old, _) = status(
            &c,
            &s,
            &ed.sign(&claims("admin"), None),
            "GET",
            "/api/v1/whoami/",
            None,
        )
        .await;
        (new == 200 && old == 401).then_some(())
    })
    .await;
    // A broken file keeps the keys in use.
    std::fs::write(&jwks, "{not json").expect("write");
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let (st, _) = status(
        &c,
        &s,
        &ed2.sign(&claims("admin"), None),
        "GET",
        "/api/v1/whoami/",
        None,
    )
    .await;
    assert_eq!(st, 200);
    s.stop();
}

#[test]
fn a_missing_or_empty_key_set_stops_the_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (what, content) in [
        ("missing", None),
        ("empty", Some(r#"{"keys": []}"#)),
        ("garbage", Some("{")),
    ] {
        let path = dir.path().join(format!("{what}.json"));
        if let Some(c) = content {
            std::fs::write(&path, c).expect("write");
        }
        let out = std::process::Command::new(common::BIN)
            .args([
                "serve",
                "--port",
                "0",
                "--jwt-jwks",
                path.to_str().expect("utf8"),
                "--bolt-path",
            ])
            .arg(dir.path())
            .output()
            .expect("serve");
        assert!(!out.status.success(), "{what}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--jwt-jwks"), "{what}: {err}");
    }
}

/// A JWKS served over HTTP, as an identity provider's `jwks_uri` is: a
/// token signed by a key the server has not seen makes it fetch the set
/// again (a rotation), and then it is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_url_is_fetched_again_for_an_unknown_key() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let first = Key::ed25519("url-1");
    let second = Key::p256("url-2");
    let body = Arc::new(std::sync::Mutex::new(
        json!({"keys": [first.jwk.clone()]}).to_string(),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let served = body.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let served = served.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                let text = served.lock().expect("lock").clone();
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                    text.len()
                );
                let _ = conn.write_all(resp.as_bytes()).await;
            });
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("http://{addr}/.well-known/jwks.json");
    let s = Server::start(dir.path(), &["--jwt-jwks", &url]);
    let c = client();
    let claims = json!({"sub": "bob", "exp": now() + 300, "kala_role": "reader"});
    let (st, _) = status(
        &c,
        &s,
        &first.sign(&claims, None),
        "GET",
        "/api/v1/whoami/",
        None,
    )
    .await;
    assert_eq!(st, 200);
    let (st, _) = status(
        &c,
        &s,
        &second.sign(&claims, None),
        "GET",
        "/api/v1/whoami/",
        None,
    )
    .await;
    assert_eq!(st, 401, "a key the set does not have");
    *body.lock().expect("lock") =
        json!({"keys": [first.jwk.clone(), second.jwk.clone()]}).to_string();
    // At most one fetch per 10 s on unknown keys: within 15 s it is in.
    eventually(15, || async {
        let (st, _) = status(
            &c,
            &s,
            &second.sign(&claims, None),
            "GET",
            "/api/v1/whoami/",
            None,
        )
        .await;
        (st == 200).then_some(())
    })
    .await;
    s.stop();
}
