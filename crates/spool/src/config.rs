//! `spool server` configuration: built-in defaults, then a TOML file
//! (`--config`, or `$SPOOL_CONFIG`), then `SPOOL_…` environment variables,
//! then flags — each layer overriding the ones before it, key by key.
//!
//! [`Settings::load`] layers them and [`Settings::validate`] checks the
//! result; every error names the offending key as it was given (the file
//! key and file, the environment variable, or the flag). Secrets (the
//! callback secret, an inline admin token) are never printed:
//! [`Settings::to_toml`] shows them as `"<redacted>"`.
//!
//! | key | environment | flag | default |
//! | --- | --- | --- | --- |
//! | `listen` | `SPOOL_LISTEN` | `--listen` | `127.0.0.1:7420` |
//! | `http_listen` | `SPOOL_HTTP_LISTEN` | `--http-listen` | `127.0.0.1:7421` (`off`: no HTTP) |
//! | `data_dir` | `SPOOL_DATA_DIR` | `--data-dir` | `./spool-data` |
//! | `max_connections` | `SPOOL_MAX_CONNECTIONS` | `--max-connections` | 16,384 |
//! | `max_connections_per_peer` | `SPOOL_MAX_CONNECTIONS_PER_PEER` | `--max-connections-per-peer` | none (only `max_connections`) |
//! | `token_rate_per_s` | `SPOOL_TOKEN_RATE_PER_S` | `--token-rate-per-s` | none (unlimited) |
//! | `tls_cert_file` | `SPOOL_TLS_CERT_FILE` | `--tls-cert-file` | none: plain TCP |
//! | `tls_key_file` | `SPOOL_TLS_KEY_FILE` | `--tls-key-file` | none |
//! | `request_ttl_ms` | `SPOOL_REQUEST_TTL_MS` | `--request-ttl-ms` | 7 days |
//! | `callback_retry_ms` | `SPOOL_CALLBACK_RETRY_MS` | `--callback-retry-ms` | 24 hours |
//! | `callback_secret` | `SPOOL_CALLBACK_SECRET` | `--callback-secret` | generated, in the data dir |
//! | `outbound_allow_hosts` | `SPOOL_OUTBOUND_ALLOW_HOSTS` (comma-separated) | `--outbound-allow-host` (repeated) | loopback |
//! | `admin_token` | `SPOOL_ADMIN_TOKEN` | — | none: no authentication |
//! | `admin_token_file` | `SPOOL_ADMIN_TOKEN_FILE` | `--admin-token-file` | none |
//! | `insecure` | `SPOOL_INSECURE` | `--insecure` | false |
//! | `log_format` | `SPOOL_LOG_FORMAT` | `--log-format` | `text` |
//! | `log_level` | `SPOOL_LOG_LEVEL`, else `RUST_LOG` | `--log-level` | `info` |

use crate::cli::{LogFormatArg, ServerArgs};
use spool_server::auth::{Secret, ADMIN_TOKEN_LEN_MIN};
use std::collections::BTreeMap;
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

/// One setting's names in each layer.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    pub toml: &'static str,
    pub env: &'static str,
    pub flag: Option<&'static str>,
}

pub const LISTEN: Key = Key {
    toml: "listen",
    env: "SPOOL_LISTEN",
    flag: Some("--listen"),
};
pub const HTTP_LISTEN: Key = Key {
    toml: "http_listen",
    env: "SPOOL_HTTP_LISTEN",
    flag: Some("--http-listen"),
};
pub const DATA_DIR: Key = Key {
    toml: "data_dir",
    env: "SPOOL_DATA_DIR",
    flag: Some("--data-dir"),
};
pub const MAX_CONNECTIONS: Key = Key {
    toml: "max_connections",
    env: "SPOOL_MAX_CONNECTIONS",
    flag: Some("--max-connections"),
};
pub const MAX_CONNECTIONS_PER_PEER: Key = Key {
    toml: "max_connections_per_peer",
    env: "SPOOL_MAX_CONNECTIONS_PER_PEER",
    flag: Some("--max-connections-per-peer"),
};
pub const TOKEN_RATE_PER_S: Key = Key {
    toml: "token_rate_per_s",
    env: "SPOOL_TOKEN_RATE_PER_S",
    flag: Some("--token-rate-per-s"),
};
pub const TLS_CERT_FILE: Key = Key {
    toml: "tls_cert_file",
    env: "SPOOL_TLS_CERT_FILE",
    flag: Some("--tls-cert-file"),
};
pub const TLS_KEY_FILE: Key = Key {
    toml: "tls_key_file",
    env: "SPOOL_TLS_KEY_FILE",
    flag: Some("--tls-key-file"),
};
pub const REQUEST_TTL_MS: Key = Key {
    toml: "request_ttl_ms",
    env: "SPOOL_REQUEST_TTL_MS",
    flag: Some("--request-ttl-ms"),
};
pub const CALLBACK_RETRY_MS: Key = Key {
    toml: "callback_retry_ms",
    env: "SPOOL_CALLBACK_RETRY_MS",
    flag: Some("--callback-retry-ms"),
};
pub const CALLBACK_SECRET: Key = Key {
    toml: "callback_secret",
    env: "SPOOL_CALLBACK_SECRET",
    flag: Some("--callback-secret"),
};
pub const OUTBOUND_ALLOW_HOSTS: Key = Key {
    toml: "outbound_allow_hosts",
    env: "SPOOL_OUTBOUND_ALLOW_HOSTS",
    flag: Some("--outbound-allow-host"),
};
pub const ADMIN_TOKEN: Key = Key {
    toml: "admin_token",
    env: "SPOOL_ADMIN_TOKEN",
    flag: None,
};
pub const ADMIN_TOKEN_FILE: Key = Key {
    toml: "admin_token_file",
    env: "SPOOL_ADMIN_TOKEN_FILE",
    flag: Some("--admin-token-file"),
};
pub const INSECURE: Key = Key {
    toml: "insecure",
    env: "SPOOL_INSECURE",
    flag: Some("--insecure"),
};
pub const LOG_FORMAT: Key = Key {
    toml: "log_format",
    env: "SPOOL_LOG_FORMAT",
    flag: Some("--log-format"),
};
pub const LOG_LEVEL: Key = Key {
    toml: "log_level",
    env: "SPOOL_LOG_LEVEL",
    flag: Some("--log-level"),
};
/// `log_level` also follows the usual `RUST_LOG`, below `SPOOL_LOG_LEVEL`.
const RUST_LOG: &str = "RUST_LOG";

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Default,
    File(PathBuf),
    /// The environment variable's name.
    Env(&'static str),
    Flag,
}

/// A value and where it came from.
#[derive(Debug, Clone)]
pub struct Setting<T> {
    pub value: T,
    pub key: Key,
    pub origin: Origin,
}

impl<T> Setting<T> {
    fn default(key: Key, value: T) -> Setting<T> {
        Setting {
            value,
            key,
            origin: Origin::Default,
        }
    }

    fn set(&mut self, value: Option<T>, origin: &Origin) {
        if let Some(v) = value {
            self.value = v;
            self.origin = origin.clone();
        }
    }

    /// The key as it was given: `` `listen` in /etc/spool.toml ``,
    /// `SPOOL_LISTEN`, `--listen`, or just `listen` for a default.
    pub fn name(&self) -> String {
        name(self.key, &self.origin)
    }

    /// An error about this setting, naming it.
    fn error(&self, message: impl fmt::Display) -> ConfigError {
        ConfigError(format!("{}: {message}", self.name()))
    }
}

fn name(key: Key, origin: &Origin) -> String {
    match origin {
        Origin::Default => key.toml.to_owned(),
        Origin::File(path) => format!("`{}` in {}", key.toml, path.display()),
        Origin::Env(var) => (*var).to_owned(),
        Origin::Flag => key.flag.unwrap_or(key.toml).to_owned(),
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (colored on a terminal).
    Text,
    /// One JSON object per line, with the spans (connection, request ID).
    Json,
}

impl LogFormat {
    fn parse(s: &str) -> Result<LogFormat, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("{other:?} is not a log format: use text or json")),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// The admin token's source: the token itself, or a file holding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminToken {
    Inline(Secret),
    File(PathBuf),
}

/// The keys a configuration file may hold.
const FILE_KEYS: &[Key] = &[
    LISTEN,
    HTTP_LISTEN,
    DATA_DIR,
    MAX_CONNECTIONS,
    MAX_CONNECTIONS_PER_PEER,
    TOKEN_RATE_PER_S,
    TLS_CERT_FILE,
    TLS_KEY_FILE,
    REQUEST_TTL_MS,
    CALLBACK_RETRY_MS,
    CALLBACK_SECRET,
    OUTBOUND_ALLOW_HOSTS,
    ADMIN_TOKEN,
    ADMIN_TOKEN_FILE,
    INSECURE,
    LOG_FORMAT,
    LOG_LEVEL,
];

/// One layer's values, before they are laid over the defaults.
#[derive(Debug, Default)]
struct Layer {
    listen: Option<String>,
    http_listen: Option<String>,
    data_dir: Option<PathBuf>,
    max_connections: Option<u64>,
    max_connections_per_peer: Option<u64>,
    token_rate_per_s: Option<u64>,
    tls_cert_file: Option<PathBuf>,
    tls_key_file: Option<PathBuf>,
    request_ttl_ms: Option<u64>,
    callback_retry_ms: Option<u64>,
    callback_secret: Option<Secret>,
    outbound_allow_hosts: Option<Vec<String>>,
    admin_token: Option<AdminToken>,
    insecure: Option<bool>,
    log_format: Option<LogFormat>,
    log_level: Option<String>,
}

/// The effective configuration, each value with its origin.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The file read, if any.
    pub file: Option<PathBuf>,
    pub listen: Setting<String>,
    pub http_listen: Setting<String>,
    pub data_dir: Setting<PathBuf>,
    pub max_connections: Setting<u64>,
    pub max_connections_per_peer: Setting<Option<u64>>,
    pub token_rate_per_s: Setting<Option<u64>>,
    pub tls_cert_file: Setting<Option<PathBuf>>,
    pub tls_key_file: Setting<Option<PathBuf>>,
    pub request_ttl_ms: Setting<u64>,
    pub callback_retry_ms: Setting<u64>,
    pub callback_secret: Setting<Option<Secret>>,
    pub outbound_allow_hosts: Setting<Vec<String>>,
    pub admin_token: Setting<Option<AdminToken>>,
    pub insecure: Setting<bool>,
    pub log_format: Setting<LogFormat>,
    pub log_level: Setting<String>,
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
    pub callback_secret: Option<String>,
    pub outbound_allow_hosts: Vec<String>,
    pub admin_token: Option<Secret>,
    pub insecure: bool,
    pub log_format: LogFormat,
    pub log_level: String,
    /// To log once logging is set up.
    pub warnings: Vec<String>,
}

impl Settings {
    fn defaults() -> Settings {
        Settings {
            file: None,
            listen: Setting::default(LISTEN, LISTEN_DEFAULT.to_owned()),
            http_listen: Setting::default(HTTP_LISTEN, HTTP_LISTEN_DEFAULT.to_owned()),
            data_dir: Setting::default(DATA_DIR, PathBuf::from(DATA_DIR_DEFAULT)),
            max_connections: Setting::default(
                MAX_CONNECTIONS,
                spool_types::limits::CONNECTIONS_MAX_DEFAULT as u64,
            ),
            max_connections_per_peer: Setting::default(MAX_CONNECTIONS_PER_PEER, None),
            token_rate_per_s: Setting::default(TOKEN_RATE_PER_S, None),
            tls_cert_file: Setting::default(TLS_CERT_FILE, None),
            tls_key_file: Setting::default(TLS_KEY_FILE, None),
            request_ttl_ms: Setting::default(
                REQUEST_TTL_MS,
                spool_server::ServerConfig::default().request_ttl_ms as u64,
            ),
            callback_retry_ms: Setting::default(
                CALLBACK_RETRY_MS,
                spool_server::ServerConfig::default().callback_retry_ms as u64,
            ),
            callback_secret: Setting::default(CALLBACK_SECRET, None),
            outbound_allow_hosts: Setting::default(
                OUTBOUND_ALLOW_HOSTS,
                spool_server::ServerConfig::default().outbound_allow_hosts,
            ),
            admin_token: Setting::default(ADMIN_TOKEN, None),
            insecure: Setting::default(INSECURE, false),
            log_format: Setting::default(LOG_FORMAT, LogFormat::Text),
            log_level: Setting::default(LOG_LEVEL, "info".to_owned()),
        }
    }

    /// Layers the defaults, the file, the process environment and the flags.
    pub fn load(args: &ServerArgs) -> Result<Settings, ConfigError> {
        let env: BTreeMap<String, String> = std::env::vars().collect();
        Self::load_from(args, &env)
    }

    /// [`Settings::load`] with the environment given (for tests).
    pub fn load_from(
        args: &ServerArgs,
        env: &BTreeMap<String, String>,
    ) -> Result<Settings, ConfigError> {
        let mut settings = Settings::defaults();
        if let Some(path) = &args.config {
            let layer = file_layer(path)?;
            settings.apply(layer, &Origin::File(path.clone()));
            settings.file = Some(path.clone());
        }
        settings.apply_env(env)?;
        settings.apply(flag_layer(args), &Origin::Flag);
        Ok(settings)
    }

    fn apply(&mut self, layer: Layer, origin: &Origin) {
        self.listen.set(layer.listen, origin);
        self.http_listen.set(layer.http_listen, origin);
        self.data_dir.set(layer.data_dir, origin);
        self.max_connections.set(layer.max_connections, origin);
        self.max_connections_per_peer
            .set(layer.max_connections_per_peer.map(Some), origin);
        self.token_rate_per_s
            .set(layer.token_rate_per_s.map(Some), origin);
        self.tls_cert_file
            .set(layer.tls_cert_file.map(Some), origin);
        self.tls_key_file.set(layer.tls_key_file.map(Some), origin);
        self.request_ttl_ms.set(layer.request_ttl_ms, origin);
        self.callback_retry_ms.set(layer.callback_retry_ms, origin);
        self.callback_secret
            .set(layer.callback_secret.map(Some), origin);
        self.outbound_allow_hosts
            .set(layer.outbound_allow_hosts, origin);
        if let Some(token) = layer.admin_token {
            // `admin_token` and `admin_token_file` are one setting in two
            // forms: the form given names it.
            self.admin_token.key = match token {
                AdminToken::Inline(_) => ADMIN_TOKEN,
                AdminToken::File(_) => ADMIN_TOKEN_FILE,
            };
            self.admin_token.set(Some(Some(token)), origin);
        }
        self.insecure.set(layer.insecure, origin);
        self.log_format.set(layer.log_format, origin);
        self.log_level.set(layer.log_level, origin);
    }

    /// The environment layer. Each variable is its own origin, so errors
    /// and `--print-config` name the variable. Empty variables are unset.
    fn apply_env(&mut self, env: &BTreeMap<String, String>) -> Result<(), ConfigError> {
        let get = |key: Key| -> Option<(&'static str, &str)> {
            env.get(key.env)
                .map(String::as_str)
                .filter(|v| !v.is_empty())
                .map(|v| (key.env, v))
        };
        let origin = |var: &'static str| Origin::Env(var);
        if let Some((var, v)) = get(LISTEN) {
            self.listen.set(Some(v.to_owned()), &origin(var));
        }
        if let Some((var, v)) = get(HTTP_LISTEN) {
            self.http_listen.set(Some(v.to_owned()), &origin(var));
        }
        if let Some((var, v)) = get(DATA_DIR) {
            self.data_dir.set(Some(PathBuf::from(v)), &origin(var));
        }
        if let Some((var, v)) = get(MAX_CONNECTIONS) {
            let n = v
                .trim()
                .parse::<u64>()
                .map_err(|_| ConfigError(format!("{var}: {v:?} is not a number of connections")))?;
            self.max_connections.set(Some(n), &origin(var));
        }
        for (key, setting, unit) in [
            (
                MAX_CONNECTIONS_PER_PEER,
                &mut self.max_connections_per_peer,
                "connections",
            ),
            (TOKEN_RATE_PER_S, &mut self.token_rate_per_s, "requests"),
        ] {
            if let Some((var, v)) = get(key) {
                let n = v
                    .trim()
                    .parse::<u64>()
                    .map_err(|_| ConfigError(format!("{var}: {v:?} is not a number of {unit}")))?;
                setting.set(Some(Some(n)), &origin(var));
            }
        }
        for (key, setting) in [
            (TLS_CERT_FILE, &mut self.tls_cert_file),
            (TLS_KEY_FILE, &mut self.tls_key_file),
        ] {
            if let Some((var, v)) = get(key) {
                setting.set(Some(Some(PathBuf::from(v))), &origin(var));
            }
        }
        for (key, setting) in [
            (REQUEST_TTL_MS, &mut self.request_ttl_ms),
            (CALLBACK_RETRY_MS, &mut self.callback_retry_ms),
        ] {
            if let Some((var, v)) = get(key) {
                let n = v.trim().parse::<u64>().map_err(|_| {
                    ConfigError(format!("{var}: {v:?} is not a number of milliseconds"))
                })?;
                setting.set(Some(n), &origin(var));
            }
        }
        if let Some((var, v)) = get(CALLBACK_SECRET) {
            self.callback_secret
                .set(Some(Some(Secret::new(v))), &origin(var));
        }
        if let Some((var, v)) = get(OUTBOUND_ALLOW_HOSTS) {
            let hosts = v
                .split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .map(str::to_owned)
                .collect();
            self.outbound_allow_hosts.set(Some(hosts), &origin(var));
        }
        let inline = get(ADMIN_TOKEN);
        let file = get(ADMIN_TOKEN_FILE);
        if inline.is_some() && file.is_some() {
            return Err(ConfigError(format!(
                "{} and {}: set only one of them",
                ADMIN_TOKEN.env, ADMIN_TOKEN_FILE.env
            )));
        }
        if let Some((var, v)) = inline {
            self.admin_token.key = ADMIN_TOKEN;
            self.admin_token
                .set(Some(Some(AdminToken::Inline(Secret::new(v)))), &origin(var));
        }
        if let Some((var, v)) = file {
            self.admin_token.key = ADMIN_TOKEN_FILE;
            self.admin_token
                .set(Some(Some(AdminToken::File(PathBuf::from(v)))), &origin(var));
        }
        if let Some((var, v)) = get(INSECURE) {
            let b = parse_bool(v).ok_or_else(|| {
                ConfigError(format!("{var}: {v:?} is not true or false (or 1 or 0)"))
            })?;
            self.insecure.set(Some(b), &origin(var));
        }
        if let Some((var, v)) = get(LOG_FORMAT) {
            let f = LogFormat::parse(v).map_err(|e| ConfigError(format!("{var}: {e}")))?;
            self.log_format.set(Some(f), &origin(var));
        }
        let level = get(LOG_LEVEL).or_else(|| {
            env.get(RUST_LOG)
                .map(String::as_str)
                .filter(|v| !v.is_empty())
                .map(|v| (RUST_LOG, v))
        });
        if let Some((var, v)) = level {
            self.log_level.set(Some(v.to_owned()), &origin(var));
        }
        Ok(())
    }

    /// Checks every value and resolves addresses and the admin token.
    pub fn validate(&self) -> Result<Validated, ConfigError> {
        let mut warnings = Vec::new();
        let listen = resolve(&self.listen)?;
        let http_listen = if self.http_listen.value.eq_ignore_ascii_case(HTTP_OFF) {
            None
        } else {
            Some(resolve(&self.http_listen)?)
        };
        if self.data_dir.value.as_os_str().is_empty() {
            return Err(self.data_dir.error("must name a directory"));
        }
        let max_connections = usize::try_from(self.max_connections.value)
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| self.max_connections.error("must be at least 1"))?;
        let max_connections_per_peer = self
            .max_connections_per_peer
            .value
            .map(|n| {
                usize::try_from(n)
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| self.max_connections_per_peer.error("must be at least 1"))
            })
            .transpose()?;
        let token_rate_per_s = self
            .token_rate_per_s
            .value
            .map(|n| {
                u32::try_from(n).ok().filter(|n| *n >= 1).ok_or_else(|| {
                    self.token_rate_per_s
                        .error("must be between 1 and 4294967295 requests per second")
                })
            })
            .transpose()?;
        let tls = match (&self.tls_cert_file.value, &self.tls_key_file.value) {
            (None, None) => None,
            (Some(cert), Some(key)) => {
                for (setting, path) in [(&self.tls_cert_file, cert), (&self.tls_key_file, key)] {
                    if !path.is_file() {
                        return Err(
                            setting.error(format!("{} is not a readable file", path.display()))
                        );
                    }
                }
                Some(spool_server::tls::TlsFiles {
                    cert_path: cert.clone(),
                    key_path: key.clone(),
                })
            }
            (Some(_), None) => {
                return Err(self
                    .tls_cert_file
                    .error("is set but tls_key_file is not: TLS needs both"))
            }
            (None, Some(_)) => {
                return Err(self
                    .tls_key_file
                    .error("is set but tls_cert_file is not: TLS needs both"))
            }
        };
        let millis = |s: &Setting<u64>| {
            i64::try_from(s.value)
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| s.error("must be a positive number of milliseconds"))
        };
        let request_ttl_ms = millis(&self.request_ttl_ms)?;
        let callback_retry_ms = millis(&self.callback_retry_ms)?;
        let callback_secret = match &self.callback_secret.value {
            Some(s) if s.expose().is_empty() => {
                return Err(self.callback_secret.error("must not be empty"))
            }
            Some(s) if s.expose() == REDACTED => {
                return Err(self.callback_secret.error(format!(
                    "{REDACTED:?} is what --print-config shows instead of a secret, not a secret"
                )))
            }
            Some(s) => Some(s.expose().to_owned()),
            None => None,
        };
        if let Some(h) = self
            .outbound_allow_hosts
            .value
            .iter()
            .find(|h| h.trim().is_empty() || h.contains(char::is_whitespace))
        {
            return Err(self
                .outbound_allow_hosts
                .error(format!("{h:?} is not a host name")));
        }
        let admin_token = match &self.admin_token.value {
            None => None,
            Some(AdminToken::Inline(secret)) => {
                if matches!(self.admin_token.origin, Origin::File(_)) {
                    warnings.push(format!(
                        "{} holds the admin token in clear: prefer admin_token_file or SPOOL_ADMIN_TOKEN",
                        self.admin_token.name()
                    ));
                }
                Some(check_admin_token(&self.admin_token, secret.expose())?)
            }
            Some(AdminToken::File(path)) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    self.admin_token
                        .error(format!("cannot read {}: {e}", path.display()))
                })?;
                if let Some(w) = loose_permissions(path) {
                    warnings.push(w);
                }
                Some(check_admin_token(&self.admin_token, text.trim())?)
            }
        };
        tracing_subscriber::EnvFilter::try_new(&self.log_level.value).map_err(|e| {
            self.log_level
                .error(format!("{:?}: {e}", self.log_level.value))
        })?;
        Ok(Validated {
            listen,
            http_listen,
            http_explicit: self.http_listen.origin != Origin::Default,
            data_dir: self.data_dir.value.clone(),
            max_connections,
            max_connections_per_peer,
            token_rate_per_s,
            tls,
            request_ttl_ms,
            callback_retry_ms,
            callback_secret,
            outbound_allow_hosts: self.outbound_allow_hosts.value.clone(),
            admin_token,
            insecure: self.insecure.value,
            log_format: self.log_format.value,
            log_level: self.log_level.value.clone(),
            warnings,
        })
    }

    /// The effective configuration as TOML, each line commented with where
    /// its value came from. Secrets show as `"<redacted>"`.
    pub fn to_toml(&self) -> String {
        let mut out = String::from("# spool server: effective configuration\n");
        if let Some(file) = &self.file {
            let _ = writeln!(out, "# file: {}", file.display());
        }
        let string = |s: &str| toml::Value::String(s.to_owned());
        let path = |p: &Path| toml::Value::String(p.display().to_string());
        line(&mut out, &self.listen, string(&self.listen.value));
        line(&mut out, &self.http_listen, string(&self.http_listen.value));
        line(&mut out, &self.data_dir, path(&self.data_dir.value));
        let max = i64::try_from(self.max_connections.value).unwrap_or(i64::MAX);
        line(&mut out, &self.max_connections, toml::Value::Integer(max));
        for (s, unset) in [
            (
                &self.max_connections_per_peer,
                "not set (only max_connections applies)",
            ),
            (&self.token_rate_per_s, "not set (no per-token rate limit)"),
        ] {
            match s.value {
                Some(n) => line(
                    &mut out,
                    s,
                    toml::Value::Integer(i64::try_from(n).unwrap_or(i64::MAX)),
                ),
                None => {
                    let _ = writeln!(out, "# {}: {unset}", s.key.toml);
                }
            }
        }
        for s in [&self.tls_cert_file, &self.tls_key_file] {
            match &s.value {
                Some(p) => line(&mut out, s, path(p)),
                None => {
                    let _ = writeln!(out, "# {}: not set (no TLS)", s.key.toml);
                }
            }
        }
        for s in [&self.request_ttl_ms, &self.callback_retry_ms] {
            line(
                &mut out,
                s,
                toml::Value::Integer(i64::try_from(s.value).unwrap_or(i64::MAX)),
            );
        }
        match &self.callback_secret.value {
            Some(_) => line(&mut out, &self.callback_secret, string(REDACTED)),
            None => out.push_str(
                "# callback_secret: not set (generated once, kept in <data_dir>/callback.secret)\n",
            ),
        }
        let hosts = self.outbound_allow_hosts.value.iter();
        let hosts = toml::Value::Array(hosts.map(|h| string(h)).collect());
        line(&mut out, &self.outbound_allow_hosts, hosts);
        match &self.admin_token.value {
            Some(AdminToken::Inline(_)) => line(&mut out, &self.admin_token, string(REDACTED)),
            Some(AdminToken::File(p)) => line(&mut out, &self.admin_token, path(p)),
            None => out
                .push_str("# admin_token: not set (no authentication; loopback addresses only)\n"),
        }
        line(
            &mut out,
            &self.insecure,
            toml::Value::Boolean(self.insecure.value),
        );
        let format = string(self.log_format.value.as_str());
        line(&mut out, &self.log_format, format);
        line(&mut out, &self.log_level, string(&self.log_level.value));
        out
    }
}

/// One `key = value  # from …` line of [`Settings::to_toml`].
fn line<T>(out: &mut String, setting: &Setting<T>, value: toml::Value) {
    let from = match &setting.origin {
        Origin::Default => "default".to_owned(),
        other => format!("from {}", name(setting.key, other)),
    };
    let _ = writeln!(out, "{} = {value}  # {from}", setting.key.toml);
}

impl Validated {
    /// Backend-only by default: without an admin token, only loopback
    /// addresses, unless `insecure`.
    pub fn check_exposure(&self, settings: &Settings) -> Result<(), ConfigError> {
        if self.admin_token.is_some() || self.insecure {
            return Ok(());
        }
        let listeners = [
            (Some(self.listen), &settings.listen),
            (self.http_listen, &settings.http_listen),
        ];
        for (addr, setting) in listeners {
            if let Some(addr) = addr.filter(|a| !a.ip().is_loopback()) {
                return Err(ConfigError(format!(
                    "refusing to listen on {addr} ({}) without authentication: with no admin \
                     token the server binds only loopback addresses. Set an admin token \
                     (SPOOL_ADMIN_TOKEN, or admin_token_file in the configuration) so every \
                     request needs a token, or pass --insecure to serve it unauthenticated",
                    setting.name()
                )));
            }
        }
        Ok(())
    }

    /// Non-loopback listeners served without authentication (`--insecure`).
    pub fn exposed(&self) -> Vec<SocketAddr> {
        if self.admin_token.is_some() {
            return Vec::new();
        }
        std::iter::once(self.listen)
            .chain(self.http_listen)
            .filter(|a| !a.ip().is_loopback())
            .collect()
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn check_admin_token(
    setting: &Setting<Option<AdminToken>>,
    token: &str,
) -> Result<Secret, ConfigError> {
    if token == REDACTED {
        return Err(setting.error(format!(
            "{REDACTED:?} is what --print-config shows instead of a secret, not a token"
        )));
    }
    if token.chars().count() < ADMIN_TOKEN_LEN_MIN {
        return Err(setting.error(format!(
            "the admin token must be at least {ADMIN_TOKEN_LEN_MIN} characters"
        )));
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(setting.error("the admin token must not contain spaces or control characters"));
    }
    Ok(Secret::new(token))
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

fn resolve(setting: &Setting<String>) -> Result<SocketAddr, ConfigError> {
    let addr = &setting.value;
    addr.to_socket_addrs()
        .map_err(|e| setting.error(format!("invalid address {addr:?}: {e}")))?
        .next()
        .ok_or_else(|| setting.error(format!("{addr:?} resolves to no address")))
}

/// Reads and parses the TOML file. Unknown keys and values of the wrong
/// type are errors naming the key and the file.
fn file_layer(path: &Path) -> Result<Layer, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
    let table: toml::Table = toml::from_str(&text)
        .map_err(|e| ConfigError(format!("{}: {}", path.display(), e.to_string().trim_end())))?;
    let origin = Origin::File(path.to_owned());
    let known: Vec<&str> = FILE_KEYS.iter().map(|k| k.toml).collect();
    if let Some(unknown) = table.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(ConfigError(format!(
            "`{unknown}` in {}: unknown key (known keys: {})",
            path.display(),
            known.join(", ")
        )));
    }
    /// The value of `key`, if present, as a `T`.
    fn get<T: serde::de::DeserializeOwned>(
        table: &toml::Table,
        key: Key,
        origin: &Origin,
        expected: &str,
    ) -> Result<Option<T>, ConfigError> {
        table
            .get(key.toml)
            .map(|v| {
                v.clone().try_into::<T>().map_err(|_| {
                    // Secrets are described, never shown.
                    let found = if [CALLBACK_SECRET.toml, ADMIN_TOKEN.toml].contains(&key.toml) {
                        format!("{} (not shown)", v.type_str())
                    } else {
                        v.to_string()
                    };
                    ConfigError(format!(
                        "{}: expected {expected}, found {found}",
                        name(key, origin)
                    ))
                })
            })
            .transpose()
    }
    let text_of = |key: Key| get::<String>(&table, key, &origin, "a string");
    let admin_token = match (text_of(ADMIN_TOKEN)?, text_of(ADMIN_TOKEN_FILE)?) {
        (Some(_), Some(_)) => {
            return Err(ConfigError(format!(
                "{} and {}: set only one of them",
                name(ADMIN_TOKEN, &origin),
                name(ADMIN_TOKEN_FILE, &origin)
            )))
        }
        (Some(t), None) => Some(AdminToken::Inline(Secret::new(t))),
        (None, Some(p)) => Some(AdminToken::File(PathBuf::from(p))),
        (None, None) => None,
    };
    let log_format = text_of(LOG_FORMAT)?
        .map(|f| {
            LogFormat::parse(&f)
                .map_err(|e| ConfigError(format!("{}: {e}", name(LOG_FORMAT, &origin))))
        })
        .transpose()?;
    Ok(Layer {
        listen: text_of(LISTEN)?,
        http_listen: text_of(HTTP_LISTEN)?,
        data_dir: text_of(DATA_DIR)?.map(PathBuf::from),
        max_connections: get(
            &table,
            MAX_CONNECTIONS,
            &origin,
            "a whole number of connections",
        )?,
        max_connections_per_peer: get(
            &table,
            MAX_CONNECTIONS_PER_PEER,
            &origin,
            "a whole number of connections",
        )?,
        token_rate_per_s: get(
            &table,
            TOKEN_RATE_PER_S,
            &origin,
            "a whole number of requests per second",
        )?,
        tls_cert_file: text_of(TLS_CERT_FILE)?.map(PathBuf::from),
        tls_key_file: text_of(TLS_KEY_FILE)?.map(PathBuf::from),
        request_ttl_ms: get(
            &table,
            REQUEST_TTL_MS,
            &origin,
            "a whole number of milliseconds",
        )?,
        callback_retry_ms: get(
            &table,
            CALLBACK_RETRY_MS,
            &origin,
            "a whole number of milliseconds",
        )?,
        callback_secret: text_of(CALLBACK_SECRET)?.map(Secret::new),
        outbound_allow_hosts: get(
            &table,
            OUTBOUND_ALLOW_HOSTS,
            &origin,
            "an array of host names",
        )?,
        admin_token,
        insecure: get(&table, INSECURE, &origin, "true or false")?,
        log_format,
        log_level: text_of(LOG_LEVEL)?,
    })
}

fn flag_layer(args: &ServerArgs) -> Layer {
    Layer {
        listen: args.listen.clone(),
        http_listen: args.http_listen.clone(),
        data_dir: args.data_dir.clone(),
        max_connections: args.max_connections,
        max_connections_per_peer: args.max_connections_per_peer,
        token_rate_per_s: args.token_rate_per_s,
        tls_cert_file: args.tls_cert_file.clone(),
        tls_key_file: args.tls_key_file.clone(),
        request_ttl_ms: args.request_ttl_ms,
        callback_retry_ms: args.callback_retry_ms,
        callback_secret: args.callback_secret.clone().map(Secret::new),
        outbound_allow_hosts: (!args.outbound_allow_hosts.is_empty())
            .then(|| args.outbound_allow_hosts.clone()),
        admin_token: args.admin_token_file.clone().map(AdminToken::File),
        insecure: args.insecure.then_some(true),
        log_format: args.log_format.map(|f| match f {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        }),
        log_level: args.log_level.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(flags: &[&str]) -> ServerArgs {
        let mut argv = vec!["spool", "server"];
        argv.extend_from_slice(flags);
        match crate::cli::Cli::parse_from(argv).command {
            crate::cli::Command::Server(a) => a,
            _ => unreachable!(),
        }
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
        assert_eq!(s.listen.value, "127.0.0.1:7003");
        assert_eq!(s.listen.origin, Origin::Flag);
        assert_eq!(s.max_connections.value, 6);
        assert_eq!(s.max_connections.name(), "SPOOL_MAX_CONNECTIONS");
        assert_eq!(s.log_format.value, LogFormat::Json);
        assert!(s.log_format.name().contains("spool.toml"));
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
