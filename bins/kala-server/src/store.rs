//! `--jobdb`: the store the flags name, opened (or a one-line error).

use std::sync::Arc;

// `Context` is used by the backends behind cargo features.
#[allow(unused_imports)]
use anyhow::Context;
use anyhow::bail;
use kala_store::{JobStore, MemoryStore};
use kala_store_redb::RedbStore;

use crate::Serve;

/// The backends `--jobdb` accepts.
pub const JOBDBS: &[&str] = &[
    "boltdb", "redis", "postgres", "mysql", "mariadb", "mongo", "consul",
];

pub async fn open_store(args: &Serve) -> anyhow::Result<Arc<dyn JobStore>> {
    if !JOBDBS.contains(&args.jobdb.as_str()) {
        bail!(
            "unknown --jobdb {:?}; valid values: {}",
            args.jobdb,
            JOBDBS.join(", ")
        );
    }
    if args.no_persist && args.jobdb != "boltdb" {
        bail!(
            "--no-persist keeps every job in memory only, so it cannot be combined with --jobdb={}: drop one of the two",
            args.jobdb
        );
    }
    if args.no_persist {
        tracing::warn!(
            "--no-persist: jobs are kept in memory only and are lost when the server stops"
        );
        return Ok(Arc::new(MemoryStore::new()));
    }
    let namespace = args.jobdb_namespace.clone().filter(|n| !n.is_empty());
    let store: Arc<dyn JobStore> = match args.jobdb.as_str() {
        "boltdb" => {
            if let Some(ns) = &namespace {
                tracing::warn!(namespace = %ns, "--jobdb-namespace does not apply to the embedded store (--bolt-path picks its directory); ignored");
            }
            let store = RedbStore::open_dir(&args.bolt_path)?;
            tracing::info!(path = %store.path().display(), "embedded store opened");
            Arc::new(store)
        }
        #[cfg(feature = "redis")]
        "redis" => {
            let options = kala_store_redis::RedisOptions {
                address: args.jobdb_address.clone(),
                password: args.jobdb_password.clone(),
                prefix: namespace.unwrap_or_else(|| "kala".into()),
                ..Default::default()
            };
            Arc::new(
                kala_store_redis::RedisStore::connect(&options)
                    .await
                    .context("--jobdb=redis")?,
            )
        }
        #[cfg(feature = "postgres")]
        "postgres" => {
            let options = kala_store_postgres::PostgresOptions {
                connect: kala_store_postgres::ConnectOptions {
                    address: args.jobdb_address.clone(),
                    username: args.jobdb_username.clone(),
                    password: args.jobdb_password.clone(),
                    ..Default::default()
                },
                schema: namespace,
            };
            Arc::new(
                kala_store_postgres::PostgresStore::connect(&options)
                    .await
                    .context("--jobdb=postgres")?,
            )
        }
        #[cfg(feature = "mysql")]
        "mysql" | "mariadb" => {
            if namespace.is_some() {
                bail!(
                    "--jobdb-namespace does not apply to {}: name the database in --jobdb-address",
                    args.jobdb
                );
            }
            let path = |p: &str| (!p.is_empty()).then(|| std::path::PathBuf::from(p));
            let options = kala_store_mysql::MySqlOptions {
                connect: kala_store_mysql::ConnectOptions {
                    address: args.jobdb_address.clone(),
                    username: args.jobdb_username.clone(),
                    password: args.jobdb_password.clone(),
                    ..Default::default()
                },
                tls_ca: path(&args.jobdb_tls_capath),
                tls_cert: path(&args.jobdb_tls_certpath),
                tls_key: path(&args.jobdb_tls_keypath),
                tls_servername: Some(args.jobdb_tls_servername.clone()),
            };
            Arc::new(
                kala_store_mysql::MySqlStore::connect(&options)
                    .await
                    .with_context(|| format!("--jobdb={}", args.jobdb))?,
            )
        }
        #[cfg(feature = "mongo")]
        "mongo" => {
            let options = kala_store_mongo::MongoOptions {
                address: args.jobdb_address.clone(),
                username: args.jobdb_username.clone(),
                password: args.jobdb_password.clone(),
                database: namespace.unwrap_or_else(|| "kala".into()),
                ..Default::default()
            };
            Arc::new(
                kala_store_mongo::MongoStore::connect(&options)
                    .await
                    .context("--jobdb=mongo")?,
            )
        }
        #[cfg(feature = "consul")]
        "consul" => {
            let path = |p: &str| (!p.is_empty()).then(|| std::path::PathBuf::from(p));
            let options = kala_store_consul::ConsulOptions {
                address: args.jobdb_address.clone(),
                token: args.jobdb_token.clone(),
                username: args.jobdb_username.clone(),
                password: args.jobdb_password.clone(),
                prefix: namespace.unwrap_or_else(|| "kala".into()),
                tls_ca: path(&args.jobdb_tls_capath),
                tls_cert: path(&args.jobdb_tls_certpath),
                tls_key: path(&args.jobdb_tls_keypath),
                tls_servername: Some(args.jobdb_tls_servername.clone()),
                ..Default::default()
            };
            Arc::new(
                kala_store_consul::ConsulStore::connect(&options)
                    .await
                    .context("--jobdb=consul")?,
            )
        }
        other if JOBDBS.contains(&other) => bail!(
            "--jobdb={other} is not built into this binary (cargo feature {:?} of kala-server is off)",
            if other == "mariadb" { "mysql" } else { other }
        ),
        other => bail!(
            "unknown --jobdb {other:?}; valid values: {}",
            JOBDBS.join(", ")
        ),
    };
    if args.jobdb != "boltdb" {
        tracing::info!(store = store.name(), "job store connected");
    }
    Ok(store)
}
