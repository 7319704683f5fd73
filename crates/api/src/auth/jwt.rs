//! OIDC / JWT bearer tokens (`--jwt-jwks FILE|URL`): a token signed by a
//! key of the JSON Web Key Set (RS256, ES256 or EdDSA; `none` and HMAC
//! are refused), not expired and already valid (`exp`, `nbf`, with
//! [`JwtConfig::leeway_secs`] of leeway), from `--jwt-issuer` for
//! `--jwt-audience` when they are set. The role is the claim
//! `--jwt-role-claim` (default `kala_role`), the owners optionally
//! another claim (a list of strings, or one string), the name the `sub`
//! claim.
//!
//! The key set is read at start (a start fails without it) and again when
//! it changes: a file is looked at every 2 s, a URL fetched every 60 s
//! and, at most every 10 s, when a token names a key id it does not have
//! (a rotation). A set that does not parse is logged and the old one kept.
//!
//! Owns: [`JwtConfig`], [`Verifier`]. Uses `jsonwebtoken` (aws-lc-rs) for
//! the signatures and claims.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use super::{Principal, Role};

/// How JWTs are checked.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// A file path or an `http(s)://` URL of the JSON Web Key Set.
    pub jwks: String,
    /// When set, the `iss` claim must be this.
    pub issuer: Option<String>,
    /// When set, the `aud` claim must name this.
    pub audience: Option<String>,
    /// The claim holding the role.
    pub role_claim: String,
    /// The claim holding the owners, when tokens carry a scope.
    pub owners_claim: Option<String>,
    /// Seconds of clock difference allowed on `exp` and `nbf`.
    pub leeway_secs: u64,
}

impl JwtConfig {
    pub fn new(jwks: impl Into<String>) -> JwtConfig {
        JwtConfig {
            jwks: jwks.into(),
            issuer: None,
            audience: None,
            role_claim: "kala_role".into(),
            owners_claim: None,
            leeway_secs: 30,
        }
    }

    fn is_url(&self) -> bool {
        self.jwks.starts_with("http://") || self.jwks.starts_with("https://")
    }
}

struct Key {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

#[derive(Default)]
struct Keys {
    text: String,
    list: Vec<Key>,
}

/// Checks JWTs against the key set; clones share it.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

struct Inner {
    config: JwtConfig,
    keys: ArcSwap<Keys>,
    http: reqwest::Client,
    /// When the set was last fetched because of an unknown key id.
    last_miss: std::sync::Mutex<Option<Instant>>,
}

/// Whether `credential` has a JWT's shape (three base64url parts).
pub fn looks_like_jwt(credential: &str) -> bool {
    credential.split('.').count() == 3
}

/// The keys of a JWKS document: those of the three accepted families.
fn parse_keys(text: &str) -> Result<Vec<Key>, String> {
    let set: JwkSet =
        serde_json::from_str(text).map_err(|e| format!("not a JSON Web Key Set: {e}"))?;
    let mut list = Vec::new();
    for jwk in &set.keys {
        let alg = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                Algorithm::ES256
            }
            AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
                Algorithm::EdDSA
            }
            _ => continue,
        };
        let declared_ok = match jwk.common.key_algorithm {
            None => true,
            Some(KeyAlgorithm::RS256) => alg == Algorithm::RS256,
            Some(KeyAlgorithm::ES256) => alg == Algorithm::ES256,
            Some(KeyAlgorithm::EdDSA) => alg == Algorithm::EdDSA,
            Some(_) => false,
        };
        if !declared_ok {
            continue;
        }
        let key = DecodingKey::from_jwk(jwk).map_err(|e| {
            format!(
                "key {}: {e}",
                jwk.common.key_id.as_deref().unwrap_or("(no kid)")
            )
        })?;
        list.push(Key {
            kid: jwk.common.key_id.clone(),
            alg,
            key,
        });
    }
    if list.is_empty() {
        return Err("no RS256, ES256 or EdDSA key in the set".into());
    }
    Ok(list)
}

impl Verifier {
    /// Reads the key set; an error names what is wrong with it.
    pub async fn new(config: JwtConfig) -> Result<Verifier, String> {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("--jwt-jwks: {e}"))?;
        let v = Verifier {
            inner: Arc::new(Inner {
                config,
                keys: ArcSwap::from_pointee(Keys::default()),
                http,
                last_miss: std::sync::Mutex::new(None),
            }),
        };
        let text = v
            .read()
            .await
            .map_err(|e| format!("--jwt-jwks {}: {e}", v.inner.config.jwks))?;
        let list =
            parse_keys(&text).map_err(|e| format!("--jwt-jwks {}: {e}", v.inner.config.jwks))?;
        v.inner.keys.store(Arc::new(Keys { text, list }));
        Ok(v)
    }

    async fn read(&self) -> Result<String, String> {
        let c = &self.inner.config;
        if c.is_url() {
            let resp = self
                .inner
                .http
                .get(&c.jwks)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if !resp.status().is_success() {
                return Err(format!("answered {}", resp.status()));
            }
            // A key set is small; a larger answer is not one.
            let body = resp.bytes().await.map_err(|e| e.to_string())?;
            if body.len() > 1 << 20 {
                return Err("larger than 1 MiB".into());
            }
            String::from_utf8(body.to_vec()).map_err(|_| "not UTF-8".to_string())
        } else {
            tokio::fs::read_to_string(&c.jwks)
                .await
                .map_err(|e| e.to_string())
        }
    }

    /// Reads the set again; replaces the keys when it changed and parses.
    /// Whether the keys changed.
    pub async fn refresh(&self) -> bool {
        let text = match self.read().await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(jwks = %self.inner.config.jwks, error = %e, "the JWKS could not be read; the keys in use are kept");
                return false;
            }
        };
        if text == self.inner.keys.load().text {
            return false;
        }
        match parse_keys(&text) {
            Ok(list) => {
                tracing::info!(jwks = %self.inner.config.jwks, keys = list.len(), "JWKS reloaded");
                self.inner.keys.store(Arc::new(Keys { text, list }));
                true
            }
            Err(e) => {
                tracing::warn!(jwks = %self.inner.config.jwks, error = %e, "the changed JWKS is refused; the keys in use are kept");
                false
            }
        }
    }

    /// Looks at the set every 2 s (a file) or 60 s (a URL) for as long as
    /// the runtime runs.
    pub fn spawn_refresh(&self) {
        let v = self.clone();
        let every = if v.inner.config.is_url() {
            Duration::from_secs(60)
        } else {
            Duration::from_secs(2)
        };
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                v.refresh().await;
            }
        });
    }

    /// The principal of a valid token; the error says why it is not (for
    /// the log and the audit; the client gets a plain 401).
    pub async fn verify(&self, token: &str) -> Result<Principal, String> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| format!("header: {e}"))?;
        if !matches!(
            header.alg,
            Algorithm::RS256 | Algorithm::ES256 | Algorithm::EdDSA
        ) {
            return Err(format!("algorithm {:?} is not accepted", header.alg));
        }
        let fits = |k: &&Key| k.alg == header.alg && (header.kid.is_none() || k.kid == header.kid);
        let known = self.inner.keys.load().list.iter().any(|k| fits(&k));
        if !known && self.inner.config.is_url() && self.may_fetch_on_miss() {
            // A key the set does not have yet (a rotation): fetch it once,
            // waiting at most 2 s so an identity provider that stalls
            // does not hold the request (the periodic refresh goes on).
            let _ = tokio::time::timeout(Duration::from_secs(2), self.refresh()).await;
        }
        let keys = self.inner.keys.load();
        let candidates: Vec<&Key> = keys.list.iter().filter(fits).collect();
        if candidates.is_empty() {
            return Err("no key of the set matches the token's kid and alg".into());
        }
        let c = &self.inner.config;
        let mut validation = Validation::new(header.alg);
        validation.leeway = c.leeway_secs;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp"]);
        match &c.issuer {
            Some(iss) => validation.set_issuer(&[iss]),
            None => validation.iss = None,
        }
        match &c.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        let mut last = String::new();
        for k in candidates {
            match jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
                token,
                &k.key,
                &validation,
            ) {
                Ok(data) => return self.principal(&data.claims),
                Err(e) => last = e.to_string(),
            }
        }
        Err(last)
    }

    fn may_fetch_on_miss(&self) -> bool {
        let Ok(mut last) = self.inner.last_miss.lock() else {
            return false;
        };
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < Duration::from_secs(10)) {
            return false;
        }
        *last = Some(now);
        true
    }

    fn principal(
        &self,
        claims: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Principal, String> {
        let c = &self.inner.config;
        let role: Role = claims
            .get(&c.role_claim)
            .and_then(|v| v.as_str())
            .ok_or_else(|| format!("no {} claim", c.role_claim))?
            .parse()?;
        let owners = match &c.owners_claim {
            None => None,
            Some(name) => match claims.get(name) {
                None | Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::String(one)) => Some(vec![one.clone()]),
                Some(serde_json::Value::Array(many)) => Some(
                    many.iter()
                        .map(|v| v.as_str().map(str::to_string))
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| format!("{name}: not a list of strings"))?,
                ),
                Some(_) => return Err(format!("{name}: not a list of strings")),
            },
        };
        if owners.as_ref().is_some_and(Vec::is_empty) {
            return Err(format!(
                "{}: an empty list",
                c.owners_claim.as_deref().unwrap_or("")
            ));
        }
        let name = claims.get("sub").and_then(|v| v.as_str()).unwrap_or("jwt");
        Ok(Principal {
            name: Arc::from(format!("jwt:{name}")),
            role,
            owners: owners.map(Arc::from),
            via: "jwt",
        })
    }
}
