//! The progress bar (indicatif, on stderr; hidden when stderr is not a
//! terminal). A ticker task copies a shared counter into it ten times a
//! second, so the measured tasks only bump an atomic.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;

const TICK: Duration = Duration::from_millis(100);

/// What the bar counts towards.
#[derive(Debug, Clone, Copy)]
pub enum Goal {
    Count(u64),
    Time(Duration),
}

/// A running bar; [`Progress::finish`] removes it.
pub struct Progress {
    bar: ProgressBar,
    ticker: JoinHandle<()>,
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

impl Progress {
    /// Shows `label` and `counter` (messages so far) against `goal`.
    pub fn start(label: &str, goal: Goal, counter: Arc<AtomicU64>) -> Progress {
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = match goal {
            Goal::Count(n) => {
                let bar = ProgressBar::with_draw_target(Some(n), target);
                bar.set_style(style(
                    "{prefix:>10} [{elapsed_precise}] [{wide_bar}] {human_pos}/{human_len} {per_sec}",
                ));
                bar
            }
            Goal::Time(d) => {
                let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
                let bar = ProgressBar::with_draw_target(Some(ms), target);
                bar.set_style(style("{prefix:>10} [{elapsed_precise}] [{wide_bar}] {msg}"));
                bar
            }
        };
        bar.set_prefix(label.to_owned());
        let ticking = bar.clone();
        let ticker = tokio::spawn(async move {
            let started = Instant::now();
            let mut last = 0u64;
            let mut interval = tokio::time::interval(TICK);
            loop {
                interval.tick().await;
                let n = counter.load(Ordering::Relaxed);
                match goal {
                    Goal::Count(_) => ticking.set_position(n),
                    Goal::Time(_) => {
                        let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                        ticking.set_position(ms);
                        let rate = (n.saturating_sub(last)) * 1000 / (TICK.as_millis() as u64);
                        ticking.set_message(format!("{n} msgs, {rate}/s"));
                    }
                }
                last = n;
            }
        });
        Progress { bar, ticker }
    }

    pub fn finish(self) {
        self.ticker.abort();
        self.bar.finish_and_clear();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.ticker.abort();
    }
}
