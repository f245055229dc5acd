//! `spool server` configuration: built-in defaults, then a TOML file
//! (`--config`, or `$SPOOL_CONFIG`), then `SPOOL_…` environment variables,
//! then flags — each layer overriding the ones before it, key by key.
//!
//! Every setting is declared once, as a field of [`ServerArgs`] (`cli.rs`):
//! the field name is the TOML key, and its clap attributes give the flag,
//! the environment variable, the default and the help. This module reads
//! those declarations back from clap and layers the values: a flag is what
//! clap parsed from the command line; otherwise the environment variable,
//! else the file's key, is checked here (so an error names the variable or
//! the key and file) and handed to clap as if it were the flag; otherwise
//! clap's default applies. Clap then parses the result into [`ServerArgs`],
//! and [`Settings`] remembers where each value came from.
//!
//! Clap must not read the environment itself (its errors would not name
//! the variable, and the file sits between the environment and the
//! defaults): `main` parses with [`without_env`] applied to the `server`
//! subcommand.
//!
//! Some settings are not plain clap arguments: the secrets `admin_token`
//! and `callback_secret` (the secret itself: environment and file only,
//! since a flag would show in `ps`), each one setting with its `…_file`
//! form (see [`secret`]); and `log_level`, which also follows `RUST_LOG`
//! below `SPOOL_LOG_LEVEL`.
//!
//! [`Settings::validate`] checks the result; every error names the
//! offending key as it was given (the file key and file, the environment
//! variable, or the flag). Secrets are never printed:
//! [`Settings::to_toml`] shows them as `"<redacted>"`.

mod cluster;
mod secret;

pub use cluster::PEERS_MAX;

use crate::cli::ServerArgs;
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches};
use secret::{SecretSource, ADMIN_TOKEN, CALLBACK_SECRET, CLUSTER_SECRET, SECRETS};
use spool_server::auth::Secret;
use std::any::TypeId;
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fmt::{self, Write as _};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

/// Where the binary protocol listens unless told otherwise.
pub const LISTEN_DEFAULT: &str = "127.0.0.1:7420";
/// Where the HTTP API listens unless told otherwise.
pub const HTTP_LISTEN_DEFAULT: &str = "127.0.0.1:7421";
/// The `http_listen` value that turns the HTTP API off.
pub const HTTP_OFF: &str = "off";
/// The data directory unless told otherwise.
pub const DATA_DIR_DEFAULT: &str = "./spool-data";
/// What a secret looks like in `--print-config`; refused as a value, so a
/// printed configuration fed back cannot set it by mistake.
pub const REDACTED: &str = "<redacted>";

/// `log_level` also follows the usual `RUST_LOG`, below `SPOOL_LOG_LEVEL`.
const LOG_LEVEL: &str = "log_level";
const RUST_LOG: &str = "RUST_LOG";
/// `spool server` arguments that are not settings.
const NOT_SETTINGS: &[&str] = &["config", "print_config"];
/// What `--print-config` says of a setting without a value.
const UNSET: &[(&str, &str)] = &[
    ("max_connections_per_peer", "only max_connections applies"),
    ("token_rate_per_s", "no per-token rate limit"),
    ("tls_cert_file", "no TLS"),
    ("node_id", "single-node"),
    ("peers", "single-node"),
    ("cluster_listen", "this node's address in peers"),
    ("cluster_tls_ca_file", "node links without TLS"),
    (CLUSTER_SECRET.inline, "single-node"),
    ("tls_key_file", "no TLS"),
    (
        CALLBACK_SECRET.inline,
        "generated once, kept in <data_dir>/callback.secret",
    ),
    (
        ADMIN_TOKEN.inline,
        "no authentication; loopback addresses only",
    ),
];

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Default,
    File(PathBuf),
    /// The environment variable's name.
    Env(String),
    Flag,
}

impl Origin {
    /// Which layer wins: the higher.
    fn rank(&self) -> u8 {
        match self {
            Origin::Default => 0,
            Origin::File(_) => 1,
            Origin::Env(_) => 2,
            Origin::Flag => 3,
        }
    }
}

/// A configuration error, worded to name the offending key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "configuration: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (colored on a terminal).
    Text,
    /// One JSON object per line, with the spans (connection, request ID).
    Json,
}

impl LogFormat {
    fn parse(s: &str) -> Result<LogFormat, String> {
        clap::ValueEnum::from_str(s, false)
            .map_err(|_| format!("{s:?} is not a log format: use text or json"))
    }
}

/// What a setting's values are, as far as the file and the environment are
/// concerned (from its clap declaration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A whole number; the value name says of what.
    Whole,
    /// A flag without a value.
    Bool,
    /// Repeated flag; TOML array; comma-separated in the environment.
    List,
    LogFormat,
    Text,
}

fn kind(arg: &Arg) -> Kind {
    let type_id = arg.get_value_parser().type_id();
    match arg.get_action() {
        ArgAction::SetTrue => Kind::Bool,
        ArgAction::Append => Kind::List,
        _ if type_id == TypeId::of::<u64>() => Kind::Whole,
        _ if type_id == TypeId::of::<LogFormat>() => Kind::LogFormat,
        _ => Kind::Text,
    }
}

/// The arg's value name in words: `REQUESTS_PER_SECOND` → "requests per
/// second".
fn unit(arg: &Arg) -> String {
    let name = arg.get_value_names().and_then(|n| n.first());
    let name = name.map_or_else(|| arg.get_id().to_string(), |n| n.to_string());
    name.to_lowercase().replace('_', " ")
}

/// `spool server`'s arguments as declared (with their environment
/// variables).
pub fn server_command() -> Command {
    ServerArgs::augment_args(Command::new("server"))
}

/// The settings among `cmd`'s arguments, in declaration order.
fn settings_of(cmd: &Command) -> impl Iterator<Item = &Arg> {
    cmd.get_arguments()
        .filter(|a| a.get_long().is_some() && !NOT_SETTINGS.contains(&a.get_id().as_str()))
}

/// `spool server` as clap should parse it: the settings' environment
/// variables are left to [`Settings::load`], and named in the help instead.
pub fn without_env(cmd: Command) -> Command {
    cmd.mut_args(|arg| {
        let var = arg.get_env().map(|v| v.to_string_lossy().into_owned());
        let Some(var) = var.filter(|_| !NOT_SETTINGS.contains(&arg.get_id().as_str())) else {
            return arg;
        };
        let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
        arg.env(None).help(format!("{help} [env: {var}]"))
    })
}

/// The effective configuration, each value with its origin.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The file read, if any.
    pub file: Option<PathBuf>,
    /// The values, layered.
    pub values: ServerArgs,
    /// The secrets that are set, by inline key, in whichever form won.
    secrets: BTreeMap<&'static str, SecretSource>,
    /// Each setting's values as text, as its layer gave them (for printing).
    raw: HashMap<String, Vec<String>>,
    origins: HashMap<String, Origin>,
    command: Command,
}

/// A validated configuration, ready to start a server with.
#[derive(Debug)]
pub struct Validated {
    pub listen: SocketAddr,
    /// `None`: no HTTP API.
    pub http_listen: Option<SocketAddr>,
    /// Whether `http_listen` was set rather than defaulted (a busy default
    /// port only costs the HTTP API).
    pub http_explicit: bool,
    pub data_dir: PathBuf,
    pub max_connections: usize,
    pub max_connections_per_peer: Option<usize>,
    pub token_rate_per_s: Option<u32>,
    pub tls: Option<spool_server::tls::TlsFiles>,
    pub request_ttl_ms: i64,
    pub callback_retry_ms: i64,
    pub callback_secret: Option<Secret>,
    pub outbound_allow_hosts: Vec<String>,
    pub admin_token: Option<Secret>,
    pub insecure: bool,
    pub log_format: LogFormat,
    pub log_level: String,
    /// `Some`: a node of a replicated cluster.
    pub cluster: Option<spool_server::cluster::ClusterSettings>,
    /// To log once logging is set up.
    pub warnings: Vec<String>,
}

/// One layer's say on one setting.
struct Given {
    origin: Origin,
    values: Vec<String>,
}

impl Settings {
    /// Layers the defaults, the file, the process environment and the
    /// flags; `flags` is what clap parsed from `spool server …` (with
    /// [`without_env`]).
    pub fn load(flags: &ArgMatches) -> Result<Settings, ConfigError> {
        let env: BTreeMap<String, String> = std::env::vars().collect();
        Self::load_from(flags, &env)
    }

    /// [`Settings::load`] with the environment given (for tests).
    pub fn load_from(
        flags: &ArgMatches,
        env: &BTreeMap<String, String>,
    ) -> Result<Settings, ConfigError> {
        let command = server_command();
        let file = flags.get_one::<PathBuf>("config").cloned();
        let table = match &file {
            Some(path) => read_file(path, &command)?,
            None => toml::Table::new(),
        };
        let env_of = |var: &str| env.get(var).filter(|v| !v.is_empty()).cloned();
        let mut argv: Vec<OsString> = vec!["server".into()];
        let (mut raw, mut origins) = (HashMap::new(), HashMap::new());
        for arg in settings_of(&command) {
            let key = arg.get_id().as_str();
            let given = given(arg, flags, &env_of, file.as_deref().zip(table.get(key)))?;
            let Some(given) = given else {
                let defaults = arg.get_default_values().iter();
                raw.insert(
                    key.to_owned(),
                    defaults.map(|v| v.to_string_lossy().into_owned()).collect(),
                );
                origins.insert(key.to_owned(), Origin::Default);
                continue;
            };
            let long = arg.get_long().unwrap_or(key);
            match kind(arg) {
                Kind::Bool => {
                    if given.values.first().is_some_and(|v| v == "true") {
                        argv.push(format!("--{long}").into());
                    }
                }
                _ => argv.extend(given.values.iter().map(|v| format!("--{long}={v}").into())),
            }
            raw.insert(key.to_owned(), given.values);
            origins.insert(key.to_owned(), given.origin);
        }
        let parsed = without_env(server_command())
            .try_get_matches_from(argv)
            .map_err(|e| ConfigError(e.to_string().trim_end().to_owned()))?;
        let values = ServerArgs::from_arg_matches(&parsed)
            .map_err(|e| ConfigError(e.to_string().trim_end().to_owned()))?;
        let mut settings = Settings {
            file: file.clone(),
            values,
            secrets: BTreeMap::new(),
            raw,
            origins,
            command,
        };
        for s in SECRETS {
            settings.choose_secret(s, env, file.as_deref(), &table)?;
        }
        Ok(settings)
    }

    /// Where `key`'s value came from.
    pub fn origin(&self, key: &str) -> &Origin {
        self.origins.get(key).unwrap_or(&Origin::Default)
    }

    fn arg(&self, key: &str) -> Option<&Arg> {
        self.command.get_arguments().find(|a| a.get_id() == key)
    }

    fn long(&self, key: &str) -> Option<&str> {
        self.arg(key).and_then(Arg::get_long)
    }

    /// The key as it was given: `` `listen` in /etc/spool.toml ``,
    /// `SPOOL_LISTEN`, `--listen`, or just `listen` for a default.
    pub fn name(&self, key: &str) -> String {
        name(key, self.origin(key), self.long(key))
    }

    /// An error about `key`, naming it.
    fn error(&self, key: &str, message: impl fmt::Display) -> ConfigError {
        ConfigError(format!("{}: {message}", self.name(key)))
    }

    /// `n` as a `T` of at least 1, or an error about `key` saying `must`.
    fn positive<T: TryFrom<u64> + PartialOrd + From<u8>>(
        &self,
        key: &str,
        n: u64,
        must: &str,
    ) -> Result<T, ConfigError> {
        T::try_from(n)
            .ok()
            .filter(|n| *n >= T::from(1))
            .ok_or_else(|| self.error(key, must))
    }

    /// Checks every value and resolves addresses and the admin token.
    pub fn validate(&self) -> Result<Validated, ConfigError> {
        let v = &self.values;
        let mut warnings = Vec::new();
        let listen = self.resolve("listen", &v.listen)?;
        let http_listen = if v.http_listen.eq_ignore_ascii_case(HTTP_OFF) {
            None
        } else {
            Some(self.resolve("http_listen", &v.http_listen)?)
        };
        if v.data_dir.as_os_str().is_empty() {
            return Err(self.error("data_dir", "must name a directory"));
        }
        let at_least_one = |key: &str, n: u64| self.positive::<usize>(key, n, "must be at least 1");
        let max_connections = at_least_one("max_connections", v.max_connections)?;
        let max_connections_per_peer = v
            .max_connections_per_peer
            .map(|n| at_least_one("max_connections_per_peer", n))
            .transpose()?;
        let token_rate_per_s = v
            .token_rate_per_s
            .map(|n| {
                self.positive::<u32>(
                    "token_rate_per_s",
                    n,
                    "must be between 1 and 4294967295 requests per second",
                )
            })
            .transpose()?;
        let tls = match (&v.tls_cert_file, &v.tls_key_file) {
            (None, None) => None,
            (Some(cert), Some(key)) => {
                for (setting, path) in [("tls_cert_file", cert), ("tls_key_file", key)] {
                    if !path.is_file() {
                        return Err(self.error(
                            setting,
                            format!("{} is not a readable file", path.display()),
                        ));
                    }
                }
                Some(spool_server::tls::TlsFiles {
                    cert_path: cert.clone(),
                    key_path: key.clone(),
                })
            }
            (Some(_), None) => {
                return Err(self.error(
                    "tls_cert_file",
                    "is set but tls_key_file is not: TLS needs both",
                ))
            }
            (None, Some(_)) => {
                return Err(self.error(
                    "tls_key_file",
                    "is set but tls_cert_file is not: TLS needs both",
                ))
            }
        };
        let millis = |key: &str, n: u64| {
            self.positive::<i64>(key, n, "must be a positive number of milliseconds")
        };
        let request_ttl_ms = millis("request_ttl_ms", v.request_ttl_ms)?;
        let callback_retry_ms = millis("callback_retry_ms", v.callback_retry_ms)?;
        let callback_secret = self.read_secret(&CALLBACK_SECRET, &mut warnings)?;
        spool_server::outbound::AllowList::parse(&v.outbound_allow_hosts)
            .map_err(|e| self.error("outbound_allow_hosts", e))?;
        let admin_token = self.read_secret(&ADMIN_TOKEN, &mut warnings)?;
        let cluster = self.cluster(tls.as_ref(), &mut warnings)?;
        tracing_subscriber::EnvFilter::try_new(&v.log_level)
            .map_err(|e| self.error(LOG_LEVEL, format!("{:?}: {e}", v.log_level)))?;
        Ok(Validated {
            listen,
            http_listen,
            http_explicit: *self.origin("http_listen") != Origin::Default,
            data_dir: v.data_dir.clone(),
            max_connections,
            max_connections_per_peer,
            token_rate_per_s,
            tls,
            request_ttl_ms,
            callback_retry_ms,
            callback_secret,
            outbound_allow_hosts: v.outbound_allow_hosts.clone(),
            admin_token,
            insecure: v.insecure,
            log_format: v.log_format,
            log_level: v.log_level.clone(),
            cluster,
            warnings,
        })
    }

    fn resolve(&self, key: &str, addr: &str) -> Result<SocketAddr, ConfigError> {
        addr.to_socket_addrs()
            .map_err(|e| self.error(key, format!("invalid address {addr:?}: {e}")))?
            .next()
            .ok_or_else(|| self.error(key, format!("{addr:?} resolves to no address")))
    }

    /// The effective configuration as TOML, each line commented with where
    /// its value came from. Secrets show as `"<redacted>"`.
    pub fn to_toml(&self) -> String {
        let mut out = String::from("# spool server: effective configuration\n");
        if let Some(file) = &self.file {
            let _ = writeln!(out, "# file: {}", file.display());
        }
        let redacted = || toml::Value::String(REDACTED.to_owned());
        for arg in settings_of(&self.command) {
            let key = arg.get_id().as_str();
            let values = self.raw.get(key).map(Vec::as_slice).unwrap_or_default();
            // A secret's line is in whichever form it was given.
            let secret = SECRETS.into_iter().find(|s| s.file == key);
            let unset = match secret.map(|s| (s, self.secret_source(s))) {
                Some((s, Some(SecretSource::Inline(_)))) => {
                    self.line(&mut out, s.inline, redacted());
                    continue;
                }
                Some((s, None)) => Some(s.inline),
                _ => values.is_empty().then_some(key),
            };
            if let Some(key) = unset.filter(|_| !matches!(kind(arg), Kind::List | Kind::Bool)) {
                let why = UNSET.iter().find(|(k, _)| *k == key).map_or("", |(_, w)| w);
                let _ = writeln!(out, "# {key}: not set ({why})");
                continue;
            }
            let first = values.first().cloned().unwrap_or_default();
            let value = match kind(arg) {
                Kind::List => toml::Value::Array(
                    values
                        .iter()
                        .map(|v| toml::Value::String(v.clone()))
                        .collect(),
                ),
                Kind::Bool => toml::Value::Boolean(first == "true"),
                Kind::Whole => first
                    .parse()
                    .map_or(toml::Value::String(first), toml::Value::Integer),
                Kind::LogFormat | Kind::Text => toml::Value::String(first),
            };
            self.line(&mut out, key, value);
        }
        out
    }

    /// One `key = value  # from …` line of [`Settings::to_toml`].
    fn line(&self, out: &mut String, key: &str, value: toml::Value) {
        let from = match self.origin(key) {
            Origin::Default => "default".to_owned(),
            _ => format!("from {}", self.name(key)),
        };
        let _ = writeln!(out, "{key} = {value}  # {from}");
    }
}

/// The highest layer's say on `arg`, if any layer has one: the flag, else
/// its environment variable, else its key in the file (`file`).
fn given(
    arg: &Arg,
    flags: &ArgMatches,
    env_of: &dyn Fn(&str) -> Option<String>,
    file: Option<(&Path, &toml::Value)>,
) -> Result<Option<Given>, ConfigError> {
    let key = arg.get_id().as_str();
    if flags.value_source(key) == Some(ValueSource::CommandLine) {
        let values = flags.get_raw(key).into_iter().flatten();
        let values = values.map(|v| v.to_string_lossy().into_owned()).collect();
        let origin = Origin::Flag;
        return Ok(Some(Given { origin, values }));
    }
    let var = arg.get_env().map(|v| v.to_string_lossy().into_owned());
    let fallback = (key == LOG_LEVEL).then(|| RUST_LOG.to_owned());
    let set = var
        .into_iter()
        .chain(fallback)
        .find_map(|var| Some((env_of(&var)?, var)));
    match (set, file) {
        (Some((value, var)), _) => from_env(arg, var, &value).map(Some),
        (None, Some((path, value))) => from_file(arg, path, value).map(Some),
        (None, None) => Ok(None),
    }
}

/// `key` as it was given in `origin`.
fn name(key: &str, origin: &Origin, long: Option<&str>) -> String {
    match origin {
        Origin::Default => key.to_owned(),
        Origin::File(path) => format!("`{key}` in {}", path.display()),
        Origin::Env(var) => var.clone(),
        Origin::Flag => long.map_or_else(|| key.to_owned(), |l| format!("--{l}")),
    }
}

/// An environment variable's value for `arg`, checked.
fn from_env(arg: &Arg, var: String, value: &str) -> Result<Given, ConfigError> {
    let values = match kind(arg) {
        Kind::List => value
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(str::to_owned)
            .collect(),
        Kind::Whole => match value.trim().parse::<u64>() {
            Ok(n) => vec![n.to_string()],
            Err(_) => {
                let unit = unit(arg);
                return Err(ConfigError(format!(
                    "{var}: {value:?} is not a number of {unit}"
                )));
            }
        },
        Kind::Bool => match parse_bool(value) {
            Some(b) => vec![b.to_string()],
            None => {
                return Err(ConfigError(format!(
                    "{var}: {value:?} is not true or false (or 1 or 0)"
                )))
            }
        },
        Kind::LogFormat => {
            LogFormat::parse(value).map_err(|e| ConfigError(format!("{var}: {e}")))?;
            vec![value.to_owned()]
        }
        Kind::Text => vec![value.to_owned()],
    };
    Ok(Given {
        origin: Origin::Env(var),
        values,
    })
}

/// A file value for `arg`, checked: of the wrong type, the error names the
/// key and the file, and says what was expected.
fn from_file(arg: &Arg, path: &Path, value: &toml::Value) -> Result<Given, ConfigError> {
    let key = arg.get_id().as_str();
    let origin = Origin::File(path.to_owned());
    let values = match (kind(arg), value) {
        (Kind::Whole, toml::Value::Integer(n)) if *n >= 0 => Some(vec![n.to_string()]),
        (Kind::Bool, toml::Value::Boolean(b)) => Some(vec![b.to_string()]),
        (Kind::List, toml::Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().map(str::to_owned))
            .collect::<Option<Vec<String>>>(),
        (Kind::Text | Kind::LogFormat, toml::Value::String(s)) => Some(vec![s.clone()]),
        _ => None,
    };
    let Some(values) = values else {
        let expected = match kind(arg) {
            Kind::Whole => format!("a whole number of {}", unit(arg)),
            Kind::Bool => "true or false".to_owned(),
            Kind::List => format!("an array of {}s", unit(arg)),
            Kind::LogFormat | Kind::Text => "a string".to_owned(),
        };
        // (Secrets never come here: `secret` reads them, never showing them.)
        return Err(ConfigError(format!(
            "{}: expected {expected}, found {value}",
            name(key, &origin, None)
        )));
    };
    if kind(arg) == Kind::LogFormat {
        if let Some(v) = values.first() {
            LogFormat::parse(v)
                .map_err(|e| ConfigError(format!("{}: {e}", name(key, &origin, None))))?;
        }
    }
    Ok(Given { origin, values })
}

/// Reads and parses the TOML file; unknown keys are errors naming the key
/// and the file.
fn read_file(path: &Path, command: &Command) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
    let table: toml::Table = toml::from_str(&text)
        .map_err(|e| ConfigError(format!("{}: {}", path.display(), e.to_string().trim_end())))?;
    let mut known: Vec<&str> = Vec::new();
    for arg in settings_of(command) {
        if let Some(s) = SECRETS.into_iter().find(|s| arg.get_id() == s.file) {
            known.push(s.inline);
        }
        known.push(arg.get_id().as_str());
    }
    if let Some(unknown) = table.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(ConfigError(format!(
            "`{unknown}` in {}: unknown key (known keys: {})",
            path.display(),
            known.join(", ")
        )));
    }
    Ok(table)
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// A warning if a token file is readable by others than its owner.
fn loose_permissions(path: &Path) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode();
        if mode & 0o077 != 0 {
            return Some(format!(
                "{} is readable by others than its owner (mode {:o}); chmod 600 it",
                path.display(),
                mode & 0o777
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(flags: &[&str]) -> ArgMatches {
        let mut argv = vec!["server"];
        argv.extend_from_slice(flags);
        without_env(server_command())
            .try_get_matches_from(argv)
            .unwrap()
    }

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn layers_rise_file_env_flag() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("spool.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:7001\"\nmax_connections = 5\nlog_format = \"json\"\n",
        )
        .unwrap();
        let config = file.to_str().unwrap();
        let s = Settings::load_from(
            &args(&["--config", config, "--listen", "127.0.0.1:7003"]),
            &env(&[
                ("SPOOL_LISTEN", "127.0.0.1:7002"),
                ("SPOOL_MAX_CONNECTIONS", "6"),
            ]),
        )
        .unwrap();
        assert_eq!(s.values.listen, "127.0.0.1:7003");
        assert_eq!(*s.origin("listen"), Origin::Flag);
        assert_eq!(s.values.max_connections, 6);
        assert_eq!(s.name("max_connections"), "SPOOL_MAX_CONNECTIONS");
        assert_eq!(s.values.log_format, LogFormat::Json);
        assert!(s.name("log_format").contains("spool.toml"));
        let v = s.validate().unwrap();
        assert_eq!(v.max_connections, 6);
        assert!(!v.http_explicit);
        let toml = s.to_toml();
        assert!(
            toml.contains("listen = \"127.0.0.1:7003\"  # from --listen"),
            "{toml}"
        );
    }

    #[test]
    fn allow_list_entries_are_checked_and_may_carry_a_port() {
        let s = Settings::load_from(
            &args(&[]),
            &env(&[(
                "SPOOL_OUTBOUND_ALLOW_HOSTS",
                "127.0.0.1:9000, [::1]:9000, https://hooks.internal",
            )]),
        )
        .unwrap();
        assert_eq!(s.validate().unwrap().outbound_allow_hosts.len(), 3);
        let s =
            Settings::load_from(&args(&["--outbound-allow-host", "hooks:web"]), &env(&[])).unwrap();
        let e = s.validate().unwrap_err();
        assert!(
            e.0.starts_with("--outbound-allow-host: \"hooks:web\"") && e.0.contains("port"),
            "{e}"
        );
    }

    #[test]
    fn errors_name_the_key() {
        let e = Settings::load_from(&args(&[]), &env(&[("SPOOL_MAX_CONNECTIONS", "many")]))
            .unwrap_err();
        assert!(e.0.contains("SPOOL_MAX_CONNECTIONS"), "{e}");
        let s = Settings::load_from(&args(&["--listen", "nowhere"]), &env(&[])).unwrap();
        assert!(s.validate().unwrap_err().0.starts_with("--listen:"));
        let s = Settings::load_from(&args(&[]), &env(&[("SPOOL_ADMIN_TOKEN", "short")])).unwrap();
        assert!(s
            .validate()
            .unwrap_err()
            .0
            .starts_with("SPOOL_ADMIN_TOKEN:"));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("spool.toml");
        std::fs::write(&file, "lisen = \"127.0.0.1:1\"\n").unwrap();
        let e = Settings::load_from(&args(&["--config", file.to_str().unwrap()]), &env(&[]))
            .unwrap_err();
        assert!(e.0.contains("lisen"), "{e}");
    }

    #[test]
    fn the_callback_secret_is_one_setting_in_two_forms_and_long_enough() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("callback.key");
        std::fs::write(&file, "  from-the-file-0123  \n").unwrap();
        let path = file.to_str().unwrap();
        // The file form, trimmed.
        let s = Settings::load_from(&args(&["--callback-secret-file", path]), &env(&[])).unwrap();
        let v = s.validate().unwrap();
        let secret = v.callback_secret.as_ref().map(|s| s.expose().to_owned());
        assert_eq!(secret.as_deref(), Some("from-the-file-0123"));
        // A flag beats the environment's inline form.
        let s = Settings::load_from(
            &args(&["--callback-secret-file", path]),
            &env(&[("SPOOL_CALLBACK_SECRET", "from-the-environment")]),
        )
        .unwrap();
        let secret = s.validate().unwrap().callback_secret;
        assert_eq!(secret.unwrap().expose(), "from-the-file-0123");
        // Both forms in one layer: refused, naming both.
        let e = Settings::load_from(
            &args(&[]),
            &env(&[
                ("SPOOL_CALLBACK_SECRET", "from-the-environment"),
                ("SPOOL_CALLBACK_SECRET_FILE", path),
            ]),
        )
        .unwrap_err();
        assert!(
            e.0.contains("SPOOL_CALLBACK_SECRET and SPOOL_CALLBACK_SECRET_FILE"),
            "{e}"
        );
        // Fifteen bytes are too few, wherever they come from.
        let toml = dir.path().join("spool.toml");
        std::fs::write(&toml, "callback_secret = \"fifteen-bytes!!\"\n").unwrap();
        let s =
            Settings::load_from(&args(&["--config", toml.to_str().unwrap()]), &env(&[])).unwrap();
        let e = s.validate().unwrap_err();
        assert!(
            e.0.starts_with("`callback_secret` in") && e.0.contains("at least 16 bytes"),
            "{e}"
        );
        assert!(!e.0.contains("fifteen-bytes!!"), "{e}");
        // Sixteen are enough; in the file, with a warning.
        std::fs::write(&toml, "callback_secret = \"sixteen-bytes!!!\"\n").unwrap();
        let s =
            Settings::load_from(&args(&["--config", toml.to_str().unwrap()]), &env(&[])).unwrap();
        let v = s.validate().unwrap();
        assert_eq!(v.callback_secret.unwrap().expose(), "sixteen-bytes!!!");
        assert!(
            v.warnings.iter().any(|w| w.contains("in clear")),
            "{:?}",
            v.warnings
        );
        assert!(s.to_toml().contains("callback_secret = \"<redacted>\""));
        // The flag for the secret itself is gone (it showed in `ps`).
        assert!(without_env(server_command())
            .try_get_matches_from(["server", "--callback-secret", "x"])
            .is_err());
    }

    #[test]
    fn secrets_are_redacted_and_exposure_refused() {
        let s = Settings::load_from(
            &args(&["--listen", "0.0.0.0:0"]),
            &env(&[("SPOOL_CALLBACK_SECRET", "very-secret-value")]),
        )
        .unwrap();
        let toml = s.to_toml();
        assert!(!toml.contains("very-secret-value"));
        assert!(toml.contains("callback_secret = \"<redacted>\""));
        let v = s.validate().unwrap();
        let e = v.check_exposure(&s).unwrap_err();
        assert!(
            e.0.contains("0.0.0.0:0") && e.0.contains("--insecure"),
            "{e}"
        );
        let s = Settings::load_from(
            &args(&["--listen", "0.0.0.0:0"]),
            &env(&[("SPOOL_ADMIN_TOKEN", "a-long-enough-admin-token")]),
        )
        .unwrap();
        let v = s.validate().unwrap();
        assert!(v.check_exposure(&s).is_ok());
        assert!(!s.to_toml().contains("a-long-enough-admin-token"));
    }
}
