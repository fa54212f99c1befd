//! Progress on the terminal for the long commands (`import events`, `train --from-db`,
//! `score`, `simulate`): one line on stderr saying what is being done, how much of it and
//! how fast. Nothing is drawn on a pipe, in a file or with `--json`.

use std::io::IsTerminal as _;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{HumanCount, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use crate::jobs::progress::{Progress, Reporter};

/// A terminal display when stderr is one and the output is for people; else nothing.
pub fn reporter(json: bool) -> Reporter {
    if json || !std::io::stderr().is_terminal() {
        return Reporter::default();
    }
    Reporter::new(Terminal::default())
}

#[derive(Default)]
struct Terminal {
    line: Mutex<Option<ProgressBar>>,
}

impl Terminal {
    fn line(&self) -> std::sync::MutexGuard<'_, Option<ProgressBar>> {
        // A panic while drawing leaves nothing worth protecting.
        self.line.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Progress for Terminal {
    fn stage(&self, what: &str, unit: &'static str) {
        let mut line = self.line();
        if let Some(done) = line.take() {
            done.finish_and_clear();
        }
        let template = if unit.is_empty() {
            "{spinner} {msg} ({elapsed})"
        } else {
            "{spinner} {msg}: {human_pos} {prefix} ({rate}, {elapsed})"
        };
        let style = ProgressStyle::with_template(template)
            .expect("a valid template")
            .with_key("rate", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{}/s", HumanCount(s.per_sec() as u64));
            });
        // Drawn only once it says what it is.
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
        bar.set_style(style);
        bar.set_prefix(unit);
        bar.set_message(what.to_owned());
        bar.set_draw_target(ProgressDrawTarget::stderr());
        bar.enable_steady_tick(Duration::from_millis(200));
        *line = Some(bar);
    }

    fn advance(&self, n: u64) {
        if let Some(bar) = &*self.line() {
            bar.inc(n);
        }
    }

    fn finish(&self) {
        if let Some(bar) = self.line().take() {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    /// Tests run with stderr captured or piped: nothing is drawn, whatever the job says.
    #[test]
    fn nothing_is_drawn_with_json() {
        let r = super::reporter(true);
        r.stage("scoring", "customers");
        r.advance(5);
        r.finish();
        assert_eq!(format!("{r:?}"), "Reporter");
    }
}
