//! The settings that hold secrets: the admin token and the callback secret.
//!
//! Each is one setting in two forms: the secret itself — a TOML key and an
//! environment variable, never a flag, since a flag's value shows in `ps` —
//! or a file holding it, a clap argument (key, variable and flag). A higher
//! layer's form replaces a lower layer's; both forms in one layer is an
//! error. Values are never shown: not in `--print-config`, not in errors.

use super::{loose_permissions, name, ConfigError, Origin, Settings, REDACTED};
use crate::cli::ServerArgs;
use spool_server::auth::{Secret, ADMIN_TOKEN_LEN_MIN};
use spool_types::limits::CALLBACK_SECRET_LEN_MIN;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One secret setting's two forms.
pub(super) struct SecretSetting {
    /// The TOML key of the secret itself.
    pub inline: &'static str,
    /// The environment variable of the secret itself.
    pub env: &'static str,
    /// The key of the file form (a [`ServerArgs`] field).
    pub file: &'static str,
    /// The file form's value.
    path: fn(&ServerArgs) -> Option<&PathBuf>,
    /// What it is, in messages ("the admin token").
    what: &'static str,
    /// Checks a value, saying what is wrong with it.
    check: fn(&str) -> Result<(), String>,
}

pub(super) const ADMIN_TOKEN: SecretSetting = SecretSetting {
    inline: "admin_token",
    env: "SPOOL_ADMIN_TOKEN",
    file: "admin_token_file",
    path: |v| v.admin_token_file.as_ref(),
    what: "the admin token",
    check: check_admin_token,
};

pub(super) const CALLBACK_SECRET: SecretSetting = SecretSetting {
    inline: "callback_secret",
    env: "SPOOL_CALLBACK_SECRET",
    file: "callback_secret_file",
    path: |v| v.callback_secret_file.as_ref(),
    what: "the callback secret",
    check: check_callback_secret,
};

pub(super) const CLUSTER_SECRET: SecretSetting = SecretSetting {
    inline: "cluster_secret",
    env: "SPOOL_CLUSTER_SECRET",
    file: "cluster_secret_file",
    path: |v| v.cluster_secret_file.as_ref(),
    what: "the cluster secret",
    check: check_cluster_secret,
};

/// Every secret setting.
pub(super) const SECRETS: [&SecretSetting; 3] = [&ADMIN_TOKEN, &CALLBACK_SECRET, &CLUSTER_SECRET];

fn check_cluster_secret(secret: &str) -> Result<(), String> {
    let min = spool_cluster::transport::ClusterSecret::BYTES_MIN;
    if secret.len() < min {
        return Err(format!(
            "the cluster secret must be at least {min} bytes (every node proves it knows it; \
             try `head -c 32 /dev/urandom | base64`)"
        ));
    }
    Ok(())
}

/// A secret's source: the secret itself, or a file holding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Inline(Secret),
    File(PathBuf),
}

fn check_admin_token(token: &str) -> Result<(), String> {
    if token.chars().count() < ADMIN_TOKEN_LEN_MIN {
        return Err(format!(
            "the admin token must be at least {ADMIN_TOKEN_LEN_MIN} characters"
        ));
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("the admin token must not contain spaces or control characters".into());
    }
    Ok(())
}

fn check_callback_secret(secret: &str) -> Result<(), String> {
    if secret.len() < CALLBACK_SECRET_LEN_MIN {
        return Err(format!(
            "the callback secret must be at least {CALLBACK_SECRET_LEN_MIN} bytes \
             (it keys the HMAC receivers check signatures with; try `head -c 32 \
             /dev/urandom | base64`)"
        ));
    }
    Ok(())
}

impl Settings {
    /// Picks `s`'s form: the higher layer's wins, both in one layer is an
    /// error. `file` and `table` are the configuration file and its keys.
    pub(super) fn choose_secret(
        &mut self,
        s: &SecretSetting,
        env: &BTreeMap<String, String>,
        file: Option<&Path>,
        table: &toml::Table,
    ) -> Result<(), ConfigError> {
        let long = self.long(s.file);
        let set = |var: &str| env.get(var).filter(|v| !v.is_empty());
        let file_var = self.arg(s.file).and_then(clap::Arg::get_env);
        let file_var = file_var.map(|v| v.to_string_lossy().into_owned());
        let in_file = file.filter(|_| table.contains_key(s.inline));
        let both = if in_file.is_some() && table.contains_key(s.file) {
            in_file.map(|path| (Origin::File(path.to_owned()), Origin::File(path.to_owned())))
        } else if set(s.env).is_some() && file_var.as_deref().and_then(set).is_some() {
            let env_file = file_var.clone().map(Origin::Env);
            env_file.map(|o| (Origin::Env(s.env.to_owned()), o))
        } else {
            None
        };
        if let Some((inline, file_form)) = both {
            return Err(ConfigError(format!(
                "{} and {}: set only one of them",
                name(s.inline, &inline, None),
                name(s.file, &file_form, long)
            )));
        }
        let inline = match (set(s.env), in_file.zip(table.get(s.inline))) {
            (Some(secret), _) => Some((secret.clone(), Origin::Env(s.env.to_owned()))),
            (None, Some((path, value))) => {
                let origin = Origin::File(path.to_owned());
                let secret = value.as_str().ok_or_else(|| {
                    ConfigError(format!(
                        "{}: expected a string, found {} (not shown)",
                        name(s.inline, &origin, None),
                        value.type_str()
                    ))
                })?;
                Some((secret.to_owned(), origin))
            }
            (None, None) => None,
        };
        let source = match inline {
            Some((secret, origin)) if origin.rank() > self.origin(s.file).rank() => {
                self.origins.insert(s.inline.to_owned(), origin);
                Some(SecretSource::Inline(Secret::new(secret)))
            }
            _ => (s.path)(&self.values).cloned().map(SecretSource::File),
        };
        match source {
            Some(source) => self.secrets.insert(s.inline, source),
            None => self.secrets.remove(s.inline),
        };
        Ok(())
    }

    /// `s`'s source, if it is set.
    pub(super) fn secret_source(&self, s: &SecretSetting) -> Option<&SecretSource> {
        self.secrets.get(s.inline)
    }

    /// The key `s` was given as.
    fn secret_key(&self, s: &SecretSetting) -> &'static str {
        match self.secret_source(s) {
            Some(SecretSource::Inline(_)) => s.inline,
            _ => s.file,
        }
    }

    /// `s`'s value, read (from its file) and checked; `warnings` gets what
    /// to log once logging is set up.
    pub(super) fn read_secret(
        &self,
        s: &SecretSetting,
        warnings: &mut Vec<String>,
    ) -> Result<Option<Secret>, ConfigError> {
        let text = match self.secret_source(s) {
            None => return Ok(None),
            Some(SecretSource::Inline(secret)) => {
                if matches!(self.origin(s.inline), Origin::File(_)) {
                    warnings.push(format!(
                        "{} holds {} in clear: prefer {} or {}",
                        self.name(s.inline),
                        s.what,
                        s.file,
                        s.env
                    ));
                }
                secret.expose().to_owned()
            }
            Some(SecretSource::File(path)) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    self.error(s.file, format!("cannot read {}: {e}", path.display()))
                })?;
                if let Some(w) = loose_permissions(path) {
                    warnings.push(w);
                }
                text.trim().to_owned()
            }
        };
        let key = self.secret_key(s);
        if text == REDACTED {
            return Err(self.error(
                key,
                format!("{REDACTED:?} is what --print-config shows instead of a secret, not one"),
            ));
        }
        (s.check)(&text).map_err(|e| self.error(key, e))?;
        Ok(Some(Secret::new(text)))
    }
}
