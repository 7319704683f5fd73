//! The schema migrations, compiled into the binary from the dialect's
//! [`Syntax`](crate::Syntax).
//!
//! Owns: the list of migrations and their table. Must not: run them (the
//! store does, at connect).

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

use crate::dialect::Dialect;

/// The migrations, compiled into the binary and recorded in
/// `kala_migrations` (not sqlx's default `_sqlx_migrations`, so kala can
/// share a database with an application that uses sqlx migrations).
pub fn migrator<D: Dialect>() -> Migrator {
    let mut m = Migrator::with_migrations(vec![
        Migration::new(
            1,
            "init".into(),
            MigrationType::Simple,
            D::SYNTAX.schema.into_sql_str(),
            false,
        ),
        Migration::new(
            2,
            "open runs".into(),
            MigrationType::Simple,
            D::SYNTAX.open_runs.into_sql_str(),
            false,
        ),
        Migration::new(
            3,
            "cluster".into(),
            MigrationType::Simple,
            D::SYNTAX.cluster.into_sql_str(),
            false,
        ),
        Migration::new(
            4,
            "notices".into(),
            MigrationType::Simple,
            D::SYNTAX.notices.into_sql_str(),
            false,
        ),
        Migration::new(
            5,
            "audit".into(),
            MigrationType::Simple,
            D::SYNTAX.audit.into_sql_str(),
            false,
        ),
    ]);
    m.dangerous_set_table_name("kala_migrations");
    m
}
