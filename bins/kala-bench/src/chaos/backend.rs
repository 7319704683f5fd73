//! The database a chaos run stands on: where it is, the `--jobdb…` flags
//! of an instance that reaches it through its proxy, and the namespace
//! created for the run and removed after it.

use anyhow::{Context, bail};
use sqlx::Connection;

pub(super) struct Backend {
    /// The database's `host:port`, behind the proxies.
    pub upstream: String,
    jobdb: &'static str,
    /// `--jobdb-address` with `{port}` for the proxy's port.
    address: String,
    /// `--jobdb-namespace`, where the backend has one.
    namespace: Option<String>,
    cleanup: Cleanup,
}

enum Cleanup {
    None,
    PgSchema(String),
    MysqlDb(String),
}

impl Backend {
    /// `name` (`postgres`, `redis`, `mariadb`, `consul`) at `address` (or
    /// the local server), in the fresh namespace `ns`.
    pub async fn prepare(name: &str, address: Option<String>, ns: &str) -> anyhow::Result<Backend> {
        let or = |default: &str| address.clone().unwrap_or_else(|| default.into());
        let b = |upstream, jobdb, address: &str, namespace: bool, cleanup| Backend {
            upstream,
            jobdb,
            address: address.to_string(),
            namespace: namespace.then(|| ns.to_string()),
            cleanup,
        };
        Ok(match name {
            "postgres" => b(
                or("127.0.0.1:5432"),
                "postgres",
                "postgres://postgres@127.0.0.1:{port}/test",
                true,
                Cleanup::PgSchema(ns.to_string()),
            ),
            "redis" => b(
                or("127.0.0.1:6379"),
                "redis",
                "127.0.0.1:{port}",
                true,
                Cleanup::None,
            ),
            "mariadb" | "mysql" => {
                let up = or("127.0.0.1:3306");
                let mut conn =
                    sqlx::MySqlConnection::connect(&format!("mysql://root@{up}/test")).await?;
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {ns}")))
                    .execute(&mut conn)
                    .await?;
                let address = format!("mysql://root@127.0.0.1:{{port}}/{ns}");
                b(
                    up,
                    "mariadb",
                    &address,
                    false,
                    Cleanup::MysqlDb(ns.to_string()),
                )
            }
            "consul" => b(
                address.clone().context(
                    "--address HOST:PORT of a running Consul agent is needed for consul",
                )?,
                "consul",
                "127.0.0.1:{port}",
                true,
                Cleanup::None,
            ),
            other => bail!("--backend {other}: postgres, redis, mariadb or consul"),
        })
    }

    /// The flags of an instance whose proxy listens on `port`.
    pub fn flags(&self, port: u16) -> Vec<String> {
        let mut v = vec![
            "--jobdb".to_string(),
            self.jobdb.to_string(),
            "--jobdb-address".to_string(),
            self.address.replace("{port}", &port.to_string()),
        ];
        if let Some(ns) = &self.namespace {
            v.extend(["--jobdb-namespace".to_string(), ns.clone()]);
        }
        v
    }

    /// Removes the run's schema or database (Redis and Consul keep the
    /// keys under the run's own prefix).
    pub async fn cleanup(&self) {
        let up = &self.upstream;
        let (url, sql) = match &self.cleanup {
            Cleanup::None => return,
            Cleanup::PgSchema(s) => (
                format!("postgres://postgres@{up}/test"),
                format!("DROP SCHEMA {s} CASCADE"),
            ),
            Cleanup::MysqlDb(d) => (
                format!("mysql://root@{up}/test"),
                format!("DROP DATABASE {d}"),
            ),
        };
        let dropped = match &self.cleanup {
            Cleanup::PgSchema(_) => match sqlx::PgConnection::connect(&url).await {
                Ok(mut c) => sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&mut c)
                    .await
                    .map(|_| ()),
                Err(e) => Err(e),
            },
            _ => match sqlx::MySqlConnection::connect(&url).await {
                Ok(mut c) => sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&mut c)
                    .await
                    .map(|_| ()),
                Err(e) => Err(e),
            },
        };
        if let Err(e) = dropped {
            eprintln!("warning: chaos: cleaning up {url}: {e}");
        }
    }
}
