//! Named tokens with roles (`[[tokens]]` in the config file), stored as
//! SHA-256 hashes: the file never holds a token, and a token is checked
//! by hashing what the client sent and comparing the hashes in constant
//! time.
//!
//! Owns: [`Role`], [`TokenSpec`] (one `[[tokens]]` block), [`TokenSet`]
//! (the checked set) and [`new_token`] (`kala-server token new`). Must
//! not: keep or log a token in the clear.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a caller may do; each role includes the ones before it.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    Default,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Every GET, `/metrics`, the web UI, schedule previews.
    #[default]
    Reader,
    /// + start, enable, disable.
    Operator,
    /// + create, change, delete, notifications.
    Editor,
    /// + delete all, and jobs that run local commands.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Reader, Role::Operator, Role::Editor, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Operator => "operator",
            Role::Editor => "editor",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role {s:?} (reader, operator, editor, admin)"))
    }
}

/// One `[[tokens]]` block of the config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSpec {
    /// Who the token is: in the audit log and `/api/v1/whoami/`.
    pub name: String,
    pub role: Role,
    /// `sha256:<64 hex digits>`: the SHA-256 of the token.
    pub hash: String,
    /// When set, the token sees and changes only jobs of these owners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owners: Option<Vec<String>>,
}

/// Who a request acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's name, a JWT's subject, or `anonymous` without auth.
    pub name: Arc<str>,
    pub role: Role,
    /// Owners the caller is limited to; `None` is every owner.
    pub owners: Option<Arc<[String]>>,
    /// How it was established: `token`, `jwt` or `none`.
    pub via: &'static str,
}

impl Principal {
    /// The caller of a server without authentication: an admin.
    pub fn anonymous() -> Principal {
        Principal {
            name: Arc::from("anonymous"),
            role: Role::Admin,
            owners: None,
            via: "none",
        }
    }

    /// Whether the caller may see and change jobs of `owner`.
    pub fn may_own(&self, owner: &str) -> bool {
        self.owners
            .as_ref()
            .is_none_or(|o| o.iter().any(|x| x == owner))
    }
}

/// A checked token: its name, role, scope and hash.
#[derive(Debug, Clone)]
struct Entry {
    principal: Principal,
    hash: [u8; 32],
}

/// The tokens the server accepts; replaced whole on a reload.
#[derive(Debug, Clone, Default)]
pub struct TokenSet {
    entries: Vec<Entry>,
}

fn sha256(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

/// `sha256:<hex>` of `token`: the `hash` of its `[[tokens]]` block.
pub fn hash_of(token: &str) -> String {
    format!("sha256:{}", hex::encode(sha256(token.as_bytes())))
}

fn parse_hash(name: &str, text: &str) -> Result<[u8; 32], String> {
    let hex_part = text.strip_prefix("sha256:").ok_or_else(|| {
        format!("tokens.{name}.hash: expected \"sha256:<64 hex digits>\" (the hash, not the token)")
    })?;
    let bytes = hex::decode(hex_part)
        .map_err(|_| format!("tokens.{name}.hash: not 64 hex digits after sha256:"))?;
    bytes
        .try_into()
        .map_err(|_| format!("tokens.{name}.hash: not 64 hex digits after sha256:"))
}

impl TokenSet {
    /// Checks every block: names unique and not empty, hashes well
    /// formed and distinct, owner lists not empty.
    pub fn new(specs: &[TokenSpec]) -> Result<TokenSet, String> {
        let mut entries: Vec<Entry> = Vec::with_capacity(specs.len());
        for s in specs {
            if s.name.trim().is_empty() {
                return Err("tokens: a token without a name".into());
            }
            if entries.iter().any(|e| *e.principal.name == *s.name) {
                return Err(format!("tokens.{}: the name is used twice", s.name));
            }
            let hash = parse_hash(&s.name, &s.hash)?;
            if let Some(other) = entries.iter().find(|e| e.hash == hash) {
                return Err(format!(
                    "tokens.{}: the same hash as tokens.{} (one token, two names)",
                    s.name, other.principal.name
                ));
            }
            if s.owners.as_ref().is_some_and(Vec::is_empty) {
                return Err(format!(
                    "tokens.{}.owners: an empty list would see no job; leave it out for every owner",
                    s.name
                ));
            }
            entries.push(Entry {
                principal: Principal {
                    name: Arc::from(s.name.as_str()),
                    role: s.role,
                    owners: s.owners.as_ref().map(|o| Arc::from(o.as_slice())),
                    via: "token",
                },
                hash,
            });
        }
        Ok(TokenSet { entries })
    }

    /// `--auth-token`: one admin token named `auth-token`.
    pub fn with_admin_token(mut self, token: &str) -> TokenSet {
        self.entries.push(Entry {
            principal: Principal {
                name: Arc::from("auth-token"),
                role: Role::Admin,
                owners: None,
                via: "token",
            },
            hash: sha256(token.as_bytes()),
        });
        self
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The principal of `token`. Every entry is compared (in constant
    /// time), so the time taken does not tell which one matched.
    pub fn check(&self, token: &str) -> Option<Principal> {
        let given = sha256(token.as_bytes());
        let mut found = None;
        for e in &self.entries {
            if bool::from(e.hash.ct_eq(&given)) {
                found = Some(&e.principal);
            }
        }
        found.cloned()
    }
}

/// A new random token (256 bits, URL-safe text) and its block.
pub fn new_token(
    name: &str,
    role: Role,
    owners: Option<Vec<String>>,
) -> Result<(String, TokenSpec), String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("no random numbers: {e}"))?;
    let token = format!("kala_{}", hex::encode(bytes));
    let spec = TokenSpec {
        name: name.to_string(),
        role,
        hash: hash_of(&token),
        owners,
    };
    Ok((token, spec))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, role: Role, token: &str) -> TokenSpec {
        TokenSpec {
            name: name.into(),
            role,
            hash: hash_of(token),
            owners: None,
        }
    }

    #[test]
    fn a_token_is_found_by_its_hash_and_nothing_else() {
        let set = TokenSet::new(&[
            spec("ci", Role::Operator, "t1"),
            spec("ui", Role::Reader, "t2"),
        ])
        .unwrap();
        assert_eq!(set.check("t1").unwrap().role, Role::Operator);
        assert_eq!(&*set.check("t2").unwrap().name, "ui");
        assert!(set.check("t3").is_none());
        assert!(set.check("").is_none());
        assert!(
            set.check(&hash_of("t1")).is_none(),
            "the hash is not the token"
        );
    }

    #[test]
    fn bad_blocks_are_refused_with_their_name() {
        let mut bad = spec("ci", Role::Admin, "x");
        bad.hash = "t0ken".into();
        assert!(
            TokenSet::new(&[bad])
                .unwrap_err()
                .contains("tokens.ci.hash")
        );
        let twice = [spec("a", Role::Admin, "x"), spec("a", Role::Reader, "y")];
        assert!(TokenSet::new(&twice).unwrap_err().contains("twice"));
        let same = [spec("a", Role::Admin, "x"), spec("b", Role::Reader, "x")];
        assert!(TokenSet::new(&same).unwrap_err().contains("same hash"));
        let mut empty = spec("a", Role::Admin, "x");
        empty.owners = Some(vec![]);
        assert!(TokenSet::new(&[empty]).unwrap_err().contains("owners"));
    }

    #[test]
    fn roles_are_ordered_and_parse() {
        assert!(Role::Reader < Role::Operator && Role::Operator < Role::Editor);
        assert!(Role::Editor < Role::Admin);
        assert_eq!("editor".parse::<Role>().unwrap(), Role::Editor);
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn a_new_token_checks_against_its_own_block() {
        let (token, block) = new_token("ci", Role::Operator, Some(vec!["team-a".into()])).unwrap();
        let set = TokenSet::new(&[block]).unwrap();
        let p = set.check(&token).unwrap();
        assert!(p.may_own("team-a") && !p.may_own("team-b"));
        let (other, _) = new_token("ci", Role::Operator, None).unwrap();
        assert_ne!(token, other);
    }
}
