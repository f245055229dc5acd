//! `spool token create|list|revoke`: access tokens, administered over the
//! binary protocol with an admin token (`--token` or `$SPOOL_TOKEN`). The
//! server keeps tokens (hashed) in its data directory; `create` prints the
//! new token once, as its last line of output.

use crate::cli::{TokenArgs, TokenCommand};
use crate::connect;
use serde_json::json;
use spool_client::TokenGrants;
use std::io::Write;
use std::process::ExitCode;

pub async fn run(args: TokenArgs) -> anyhow::Result<ExitCode> {
    let client = connect(&args.conn.addr).await?;
    let mut out = std::io::stdout().lock();
    match args.command {
        TokenCommand::Create {
            name,
            produce,
            consume,
            admin,
        } => {
            let grants = TokenGrants {
                produce: produce.clone(),
                consume: consume.clone(),
                admin,
            };
            let token = client.create_token(&name, grants).await?;
            writeln!(
                out,
                "created token {name} (produce: {}; consume: {}; admin: {}); \
                 it is shown only this once:",
                list(&produce),
                list(&consume),
                if admin { "yes" } else { "no" }
            )?;
            writeln!(out, "{token}")?;
        }
        TokenCommand::List { json } => {
            let tokens = client.list_tokens().await?;
            if json {
                for t in &tokens {
                    let line = json!({
                        "name": t.name,
                        "produce": t.produce,
                        "consume": t.consume,
                        "admin": t.admin,
                        "created_ms": t.created_ms,
                    });
                    writeln!(out, "{line}")?;
                }
            } else {
                let rows: Vec<[String; 5]> = tokens
                    .iter()
                    .map(|t| {
                        [
                            t.name.clone(),
                            if t.admin { "yes" } else { "no" }.to_owned(),
                            list(&t.produce),
                            list(&t.consume),
                            utc(t.created_ms),
                        ]
                    })
                    .collect();
                let header = ["NAME", "ADMIN", "PRODUCE", "CONSUME", "CREATED"].map(str::to_owned);
                let mut widths = header.clone().map(|h| h.len());
                for row in &rows {
                    for (w, cell) in widths.iter_mut().zip(row) {
                        *w = (*w).max(cell.chars().count());
                    }
                }
                for row in std::iter::once(&header).chain(&rows) {
                    let cells: Vec<String> = row
                        .iter()
                        .zip(widths)
                        .map(|(cell, w)| format!("{cell:<w$}"))
                        .collect();
                    writeln!(out, "{}", cells.join("  ").trim_end())?;
                }
            }
        }
        TokenCommand::Revoke { name } => {
            client.revoke_token(&name).await?;
            writeln!(out, "revoked token {name}")?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn list(patterns: &[String]) -> String {
    if patterns.is_empty() {
        "-".to_owned()
    } else {
        patterns.join(",")
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` (RFC 3339 in UTC, whole seconds) for ms since
/// the Unix epoch.
fn utc(ms: u64) -> String {
    // A timestamp without a fraction prints none: truncating to the second
    // gives the short form.
    let secs = i64::try_from(ms / 1000).ok();
    match secs.and_then(|s| jiff::Timestamp::from_second(s).ok()) {
        Some(t) => t.to_string(),
        // Past the year 9999, which only a damaged store could hold.
        None => format!("{ms} ms since 1970"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(super::utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::utc(1_700_000_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(super::utc(951_782_400_000), "2000-02-29T00:00:00Z");
    }
}
