//! How far long work has got (importing, scoring, training, simulating), for whoever shows
//! it: the command line draws it on a terminal (`cli::progress`); the daemon, tests and
//! pipes keep the default [`Reporter`], which shows nothing. Jobs say what they are doing
//! and how much they have done; they never draw.

use std::sync::Arc;

/// What a display of progress is told.
pub trait Progress: Send + Sync {
    /// A stage begins: what is being done, and what `advance` counts in it ("events",
    /// "customers"; empty when nothing is counted).
    fn stage(&self, what: &str, unit: &'static str);
    /// `n` more units done in the current stage.
    fn advance(&self, n: u64);
    /// The work is over (or failed): take the display away.
    fn finish(&self);
}

/// Shows nothing.
struct Quiet;

impl Progress for Quiet {
    fn stage(&self, _: &str, _: &'static str) {}
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
}

/// A shareable [`Progress`]; the default shows nothing.
#[derive(Clone)]
pub struct Reporter(Arc<dyn Progress>);

impl Reporter {
    pub fn new(display: impl Progress + 'static) -> Self {
        Reporter(Arc::new(display))
    }

    pub fn stage(&self, what: &str, unit: &'static str) {
        self.0.stage(what, unit);
    }

    pub fn advance(&self, n: u64) {
        self.0.advance(n);
    }

    pub fn finish(&self) {
        self.0.finish();
    }
}

impl Default for Reporter {
    fn default() -> Self {
        Reporter(Arc::new(Quiet))
    }
}

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reporter")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Records what it is told, for tests of the jobs that report.
    #[derive(Default)]
    pub struct Recorded(pub Mutex<Vec<(String, &'static str, u64)>>);

    impl Progress for Arc<Recorded> {
        fn stage(&self, what: &str, unit: &'static str) {
            self.0.lock().unwrap().push((what.to_owned(), unit, 0));
        }
        fn advance(&self, n: u64) {
            if let Some(last) = self.0.lock().unwrap().last_mut() {
                last.2 += n;
            }
        }
        fn finish(&self) {}
    }
}
