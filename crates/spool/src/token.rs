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

/// `YYYY-MM-DDTHH:MM:SSZ` for ms since the Unix epoch.
fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
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
