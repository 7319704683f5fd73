//! Who may use the API: the config file's `[[tokens]]` (name, role,
//! SHA-256 hash, owners; re-read on SIGHUP), `--auth-token` (one admin
//! token), `--allow-commands` (the role a job running a local command
//! needs), and JWT bearer tokens (`--jwt-*`). `kala-server token new`
//! makes a token and its block.
//!
//! Owns: these flags, reading the tokens, the SIGHUP reload.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use kala_api::{Auth, JwtConfig, JwtVerifier, Role, TokenSet, TokenSpec};

#[derive(clap::Subcommand)]
pub enum TokenCmd {
    /// Print a new random token once, and the `[[tokens]]` block (with
    /// its SHA-256 hash, never the token) for the config file.
    New {
        /// Who the token is for: in the audit log and /api/v1/whoami/.
        #[arg(long)]
        name: String,
        /// reader, operator, editor or admin.
        #[arg(long)]
        role: Role,
        /// Limit the token to jobs of this owner (repeatable).
        #[arg(long)]
        owner: Vec<String>,
    },
}

#[derive(clap::Args, Debug, Clone)]
pub struct AuthArgs {
    /// The role a job that runs a local command (type 0) needs: admin
    /// (the default) or editor. Other roles create none.
    #[arg(
        long = "allow-commands",
        env = "KALA_ALLOW_COMMANDS",
        default_value = "admin",
        value_parser = parse_command_role
    )]
    pub allow_commands: Role,
    /// Accept JWT bearer tokens signed by a key of this JSON Web Key Set
    /// (a file, or an http(s) URL such as an OIDC provider's jwks_uri);
    /// RS256, ES256 and EdDSA. Re-read when it changes.
    #[arg(long = "jwt-jwks", env = "KALA_JWT_JWKS", value_name = "FILE|URL")]
    pub jwt_jwks: Option<String>,
    /// The `iss` a JWT must carry.
    #[arg(long = "jwt-issuer", env = "KALA_JWT_ISSUER", requires = "jwt_jwks")]
    pub jwt_issuer: Option<String>,
    /// The `aud` a JWT must name.
    #[arg(
        long = "jwt-audience",
        env = "KALA_JWT_AUDIENCE",
        requires = "jwt_jwks"
    )]
    pub jwt_audience: Option<String>,
    /// The claim that holds a JWT's role (reader, operator, editor, admin).
    #[arg(
        long = "jwt-role-claim",
        env = "KALA_JWT_ROLE_CLAIM",
        default_value = "kala_role"
    )]
    pub jwt_role_claim: String,
    /// The claim that holds a JWT's owners (a list of strings or one
    /// string); without it, or without the claim, every owner.
    #[arg(long = "jwt-owners-claim", env = "KALA_JWT_OWNERS_CLAIM")]
    pub jwt_owners_claim: Option<String>,
    /// Also write each audit entry (every change, who made it, the diff)
    /// to this file as a JSON line, for a log shipper. The entries are in
    /// the store (GET /api/v1/audit/) either way.
    #[arg(long = "audit-log", env = "KALA_AUDIT_LOG", value_name = "FILE")]
    pub audit_log: Option<PathBuf>,
    /// Days audit entries are kept; 0 keeps them for ever.
    #[arg(
        long = "audit-keep-days",
        env = "KALA_AUDIT_KEEP_DAYS",
        default_value_t = 400
    )]
    pub audit_keep_days: u32,
    /// Write no audit log (it is on by default).
    #[arg(long = "no-audit", env = "KALA_NO_AUDIT", conflicts_with = "audit_log")]
    pub no_audit: bool,
}

fn parse_command_role(s: &str) -> Result<Role, String> {
    match s.parse::<Role>()? {
        r @ (Role::Admin | Role::Editor) => Ok(r),
        other => Err(format!(
            "{other}: only admin or editor may create command jobs"
        )),
    }
}

/// The `[[tokens]]` of the config file at `path` (none when it has no
/// such key), checked.
pub fn read_tokens(path: &Path) -> Result<Vec<TokenSpec>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let Some(tokens) = table.get("tokens") else {
        return Ok(Vec::new());
    };
    let specs: Vec<TokenSpec> = tokens
        .clone()
        .try_into()
        .map_err(|e| format!("{}: tokens: {e}", path.display()))?;
    TokenSet::new(&specs).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(specs)
}

fn token_set(path: Option<&Path>) -> Result<TokenSet, String> {
    match path {
        Some(p) => TokenSet::new(&read_tokens(p)?),
        None => Ok(TokenSet::default()),
    }
}

impl AuthArgs {
    /// The engine's audit settings.
    pub fn audit(&self) -> kala_engine::AuditSettings {
        kala_engine::AuditSettings {
            enabled: !self.no_audit,
            keep: (self.audit_keep_days > 0)
                .then(|| jiff::SignedDuration::from_hours(i64::from(self.audit_keep_days) * 24)),
            log_file: self.audit_log.clone(),
        }
    }

    /// The credentials: the config file's tokens and the JWT verifier
    /// (its key set read now).
    pub async fn build(&self, config: Option<&Path>) -> anyhow::Result<Auth> {
        let tokens = token_set(config).map_err(|e| anyhow::anyhow!("--config {e}"))?;
        let jwt = match &self.jwt_jwks {
            Some(jwks) => {
                let mut c = JwtConfig::new(jwks.clone());
                c.issuer.clone_from(&self.jwt_issuer);
                c.audience.clone_from(&self.jwt_audience);
                c.role_claim.clone_from(&self.jwt_role_claim);
                c.owners_claim.clone_from(&self.jwt_owners_claim);
                let v = JwtVerifier::new(c).await.map_err(|e| anyhow::anyhow!(e))?;
                v.spawn_refresh();
                Some(v)
            }
            None => None,
        };
        if !tokens.is_empty() {
            tracing::info!(tokens = tokens.len(), "named tokens loaded");
        }
        Ok(Auth::new(tokens, jwt))
    }
}

/// On each SIGHUP, reads the config file's tokens again and puts them in
/// place; a file that does not read or check keeps the tokens in use.
pub fn reload_on_sighup(auth: Auth, config: Option<PathBuf>, engine: kala_engine::Engine) {
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!("SIGHUP cannot be caught: tokens reload only with a restart");
            return;
        };
        while hup.recv().await.is_some() {
            let Some(path) = &config else {
                tracing::warn!("SIGHUP: no config file to read tokens from");
                continue;
            };
            match token_set(Some(path)) {
                Ok(set) => {
                    let n = set.len();
                    auth.replace(set);
                    tracing::info!(tokens = n, "SIGHUP: tokens reloaded");
                    let actor = kala_engine::Actor {
                        name: "SIGHUP".into(),
                        source: "signal".into(),
                        request_id: String::new(),
                    };
                    let detail =
                        serde_json::json!({ "tokens": n, "file": path.display().to_string() });
                    if let Err(e) = engine.record_audit(&actor, "tokens_reloaded", detail).await {
                        tracing::warn!(error = %e, "the token reload could not be audited");
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "SIGHUP: tokens not reloaded; the ones in use are kept")
                }
            }
        }
    });
}

/// `kala-server token new`: prints a new token once, and the block to
/// add to the config file (with its hash).
pub fn token_new(name: &str, role: Role, owners: Vec<String>) -> ExitCode {
    if name.trim().is_empty() || name.chars().any(char::is_control) {
        eprintln!(
            "kala-server token new: --name must be a non-empty name without control characters"
        );
        return ExitCode::from(2);
    }
    if let Some(o) = owners.iter().find(|o| o.chars().any(char::is_control)) {
        eprintln!("kala-server token new: --owner {o:?} has control characters");
        return ExitCode::from(2);
    }
    let owners = (!owners.is_empty()).then_some(owners);
    match kala_api::new_token(name, role, owners) {
        Ok((token, spec)) => {
            println!("# The token (shown once; give it to {name}):");
            println!("# {token}");
            println!("# Add this block to the config file, then send kala-server SIGHUP:");
            println!("[[tokens]]");
            println!("name = {:?}", spec.name);
            println!("role = {:?}", spec.role.as_str());
            println!("hash = {:?}", spec.hash);
            if let Some(o) = &spec.owners {
                let list: Vec<String> = o.iter().map(|x| format!("{x:?}")).collect();
                println!("owners = [{}]", list.join(", "));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kala-server token new: {e}");
            ExitCode::FAILURE
        }
    }
}
