//! Progress of long one-off commands (`pull`, `train`): an indicatif bar or spinner when
//! standard error is a terminal, and plain `tracing` log lines otherwise, never both.
//!
//! The daemon turns bars off with [`disable_bars`], because it runs unattended.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

static BARS_DISABLED: AtomicBool = AtomicBool::new(false);

/// Minimum time between two progress log lines of one task.
const LOG_INTERVAL: Duration = Duration::from_secs(5);

/// Turns bars off for the rest of the process; progress is then logged.
pub fn disable_bars() {
    BARS_DISABLED.store(true, Ordering::Relaxed);
}

fn bars_enabled() -> bool {
    !BARS_DISABLED.load(Ordering::Relaxed) && std::io::stderr().is_terminal()
}

/// The progress of one task: records pulled of an object, or the stages of training.
pub struct Progress {
    task: String,
    bar: Option<ProgressBar>,
    done: Mutex<(u64, Instant)>,
}

impl Progress {
    /// Starts a counter of items (records) for `task`.
    pub fn counter(task: &str) -> Progress {
        let bar = bars_enabled().then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template("{spinner} {prefix}: {human_pos} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
            bar.set_style(style);
            bar.set_prefix(task.to_string());
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress {
            task: task.to_string(),
            bar,
            done: Mutex::new((0, Instant::now())),
        }
    }

    /// Adds `count` items; without a bar, logs the total at most every few seconds.
    pub fn advance(&self, count: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(count);
            return;
        }
        let Ok(mut done) = self.done.lock() else {
            return;
        };
        done.0 += count;
        if done.1.elapsed() >= LOG_INTERVAL {
            done.1 = Instant::now();
            tracing::info!(task = %self.task, done = done.0, "in progress");
        }
    }

    /// Shows the stage a task has reached: on the bar, or as a log line.
    pub fn stage(&self, stage: &str) {
        match &self.bar {
            Some(bar) => bar.set_message(stage.to_string()),
            None => tracing::info!(task = %self.task, stage, "in progress"),
        }
    }

    /// Removes the bar; the command prints its own summary.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
