//! The config file: TOML whose keys are the long names of `serve`'s flags
//! (`jobdb-address = "…"`, `max-concurrent-runs = 64`, `allowed-host =
//! ["a", "b"]`). Its values become the flags' defaults, so a flag beats
//! its `KALA_*` environment variable, which beats the file, which beats
//! the built-in default. `--config PATH` (or `KALA_CONFIG`) names it;
//! without either, `/etc/kala/kala.toml` is read when it exists. An
//! unknown key is an error naming it.
//!
//! Owns: reading the file into the command line, and `kala-server config`
//! (the effective configuration, secrets masked).

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{ArgMatches, Command};

/// Where the config file is read from when nothing names one.
pub const DEFAULT_PATH: &str = "/etc/kala/kala.toml";

/// The subcommands whose flags are `serve`'s (and so take the file).
const WITH_SERVE_FLAGS: &[&str] = &["serve", "import", "config"];

/// The file named by `--config`/`KALA_CONFIG`, else the default one if it
/// exists.
fn named(args: &[OsString]) -> Option<(PathBuf, bool)> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let a = a.to_string_lossy();
        if a == "--config" {
            return it.next().map(|p| (PathBuf::from(p), true));
        }
        if let Some(p) = a.strip_prefix("--config=") {
            return Some((PathBuf::from(p), true));
        }
    }
    if let Some(p) = std::env::var_os("KALA_CONFIG").filter(|p| !p.is_empty()) {
        return Some((PathBuf::from(p), true));
    }
    let default = PathBuf::from(DEFAULT_PATH);
    default.exists().then_some((default, false))
}

fn value_text(key: &str, v: &toml::Value) -> Result<String, String> {
    Ok(match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Array(items) => items
            .iter()
            .map(|i| value_text(key, i))
            .collect::<Result<Vec<_>, _>>()?
            .join(","),
        other => return Err(format!("{key}: a {} is not a flag value", other.type_str())),
    })
}

/// The config file `serve` reads: `--config`/`KALA_CONFIG`, else the
/// default one when it exists.
pub fn effective(explicit: Option<&std::path::Path>) -> Option<PathBuf> {
    match explicit {
        Some(p) => Some(p.to_path_buf()),
        None => {
            let default = PathBuf::from(DEFAULT_PATH);
            default.exists().then_some(default)
        }
    }
}

/// `cmd` with the config file's values as the defaults of `serve`'s flags.
pub fn apply(mut cmd: Command, args: &[OsString]) -> Result<Command, String> {
    let Some((path, named)) = named(args) else {
        return Ok(cmd);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if !named && e.kind() == std::io::ErrorKind::NotFound => return Ok(cmd),
        Err(e) => return Err(format!("--config {}: {e}", path.display())),
    };
    let table: toml::Table = text
        .parse()
        .map_err(|e| format!("--config {}: {e}", path.display()))?;
    let serve = cmd
        .find_subcommand("serve")
        .cloned()
        .ok_or("no serve subcommand")?;
    let mut defaults = Vec::new();
    let mut entries: Vec<(String, toml::Value)> = Vec::new();
    for (key, value) in &table {
        match (key.as_str(), value) {
            // `tags = { role = "etl" }`: the `--tag` flags.
            ("tags", toml::Value::Table(t)) => {
                let pairs = t
                    .iter()
                    .map(|(k, v)| match v {
                        toml::Value::String(v) => Ok(toml::Value::String(format!("{k}={v}"))),
                        other => Err(format!(
                            "--config {}: tags.{k}: a {} is not a tag value (a string is)",
                            path.display(),
                            other.type_str()
                        )),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                entries.push(("tag".into(), toml::Value::Array(pairs)));
            }
            // `[brokers.events] url = "…"`, `ca_file = "…"`: `--broker`
            // and `--broker-ca-file`.
            ("brokers", toml::Value::Table(t)) => {
                let (urls, cas) =
                    brokers_table(t).map_err(|e| format!("--config {}: {e}", path.display()))?;
                entries.push(("broker".into(), toml::Value::Array(urls)));
                if !cas.is_empty() {
                    entries.push(("broker-ca-file".into(), toml::Value::Array(cas)));
                }
            }
            // `[[tokens]]`: not a flag; read by `auth.rs` (and again on
            // SIGHUP).
            ("tokens", toml::Value::Array(_)) => {}
            _ => entries.push((key.clone(), value.clone())),
        }
    }
    for (key, value) in &entries {
        let arg = serve
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()) && key != "config")
            .ok_or_else(|| {
                format!(
                    "--config {}: unknown key {key:?} (keys are the long names of `kala-server serve`'s flags)",
                    path.display()
                )
            })?;
        let text =
            value_text(key, value).map_err(|e| format!("--config {}: {e}", path.display()))?;
        defaults.push((arg.get_id().clone(), text));
    }
    for name in WITH_SERVE_FLAGS {
        let defaults = defaults.clone();
        cmd = cmd.mut_subcommand(*name, move |mut sc| {
            for (id, text) in defaults {
                // Lives as long as the process: the configuration.
                let text: &'static str = Box::leak(text.into_boxed_str());
                sc = sc.mut_arg(id, |a| a.default_value(text));
            }
            sc
        });
    }
    Ok(cmd)
}

/// `[brokers.NAME]` tables as `NAME=URL` and `NAME=PATH` flag values.
fn brokers_table(t: &toml::Table) -> Result<(Vec<toml::Value>, Vec<toml::Value>), String> {
    let (mut urls, mut cas) = (Vec::new(), Vec::new());
    for (name, b) in t {
        let toml::Value::Table(b) = b else {
            return Err(format!(
                "brokers.{name}: expected a table with url (and ca_file)"
            ));
        };
        for (k, v) in b {
            let toml::Value::String(v) = v else {
                return Err(format!(
                    "brokers.{name}.{k}: a {} is not a string",
                    v.type_str()
                ));
            };
            match k.as_str() {
                "url" => urls.push(toml::Value::String(format!("{name}={v}"))),
                "ca_file" => cas.push(toml::Value::String(format!("{name}={v}"))),
                other => {
                    return Err(format!(
                        "brokers.{name}: unknown key {other:?} (url, ca_file)"
                    ));
                }
            }
        }
        if !b.contains_key("url") {
            return Err(format!("brokers.{name}: url is required"));
        }
    }
    Ok((urls, cas))
}

/// Flags whose values are not printed.
fn secret(id: &str) -> bool {
    id.contains("password") || id.contains("token") || id.contains("secret") || id == "smtp_url"
}

/// `kala-server config`: every flag of `serve` with its effective value
/// (as TOML the config file takes), secrets masked.
pub fn print(cmd: &Command, matches: &ArgMatches) {
    let Some(serve) = cmd.find_subcommand("serve") else {
        return;
    };
    for arg in serve.get_arguments() {
        let (Some(long), id) = (arg.get_long(), arg.get_id().as_str()) else {
            continue;
        };
        if matches!(long, "help" | "config") {
            continue;
        }
        let values: Vec<String> = matches
            .get_raw(id)
            .map(|v| v.map(|s| s.to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let shown = |v: &String| {
            if id == "brokers" {
                // NAME=URL with the URL's password masked.
                let (name, url) = v.split_once('=').unwrap_or(("", v));
                format!("{:?}", format!("{name}={}", kala_publish::redact(url)))
            } else if secret(id) && !v.is_empty() {
                "\"********\"".to_string()
            } else if v.parse::<i64>().is_ok() || v == "true" || v == "false" {
                v.clone()
            } else {
                format!("{v:?}")
            }
        };
        match values.as_slice() {
            [] => println!("# {long} (not set)"),
            [one]
                if arg.get_num_args().is_none_or(|n| n.max_values() <= 1)
                    && long != "allowed-host" =>
            {
                println!("{long} = {}", shown(one))
            }
            many => println!(
                "{long} = [{}]",
                many.iter().map(shown).collect::<Vec<_>>().join(", ")
            ),
        }
    }
}
