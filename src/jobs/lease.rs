//! Leases: the right to run something no other process may run at the same time (a full
//! or changed scoring run, planning, retraining, pulling one source), held in the database
//! (`run_leases`) so it holds across daemons sharing PostgreSQL as well as within one.
//!
//! A [`Lease`] renews itself in the background while it is held and is released when it is
//! dropped. A holder that dies stops renewing, and its lease expires after
//! `[worker] lease_secs`: then anyone may take it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::JobContext;
use crate::store::Db;

/// Someone else holds the lease: what runs, who runs it and since when.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} is already running ({holder}, since {since}); this one is skipped")]
pub struct Busy {
    pub what: String,
    pub holder: String,
    pub since: String,
}

/// A held lease.
#[derive(Debug)]
pub struct Lease {
    name: String,
    holder: String,
    db: Db,
    renewing: Option<tokio::task::JoinHandle<()>>,
    lost: Arc<AtomicBool>,
}

impl Lease {
    /// Takes the lease `name` for this process (`ctx.worker`), or fails with [`Busy`]
    /// (`what` names the work in the message: "a scoring run").
    pub async fn take(ctx: &JobContext, name: &str, what: &str) -> anyhow::Result<Lease> {
        let ttl = ctx.config.worker.lease_ttl_secs();
        let holder = ctx.worker.to_string();
        match ctx.db.take_lease(name, &holder, ttl).await? {
            Ok(()) => {}
            Err(current) => {
                let since = chrono::DateTime::from_timestamp(current.acquired_at, 0)
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                    .unwrap_or_default();
                return Err(Busy {
                    what: what.to_owned(),
                    holder: current.holder,
                    since,
                }
                .into());
            }
        }
        let lost = Arc::new(AtomicBool::new(false));
        let renewing = {
            let (db, name, holder, lost) = (
                ctx.db.clone(),
                name.to_owned(),
                holder.clone(),
                lost.clone(),
            );
            tokio::spawn(async move {
                let every = Duration::from_millis((ttl as u64 * 1000 / 3).max(500));
                loop {
                    tokio::time::sleep(every).await;
                    match db.renew_lease(&name, &holder, ttl).await {
                        Ok(true) => {}
                        Ok(false) => {
                            lost.store(true, Ordering::Relaxed);
                            tracing::error!(lease = %name, "lost the lease (it expired and was taken over)");
                            return;
                        }
                        Err(e) => {
                            tracing::warn!(lease = %name, error = %e, "renewing a lease failed; retrying")
                        }
                    }
                }
            })
        };
        Ok(Lease {
            name: name.to_owned(),
            holder,
            db: ctx.db.clone(),
            renewing: Some(renewing),
            lost,
        })
    }

    /// Whether the lease was lost while held (it expired: the process stalled for longer
    /// than the lease).
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Releases it now (dropping it releases it in the background).
    pub async fn release(mut self) {
        if let Some(r) = self.renewing.take() {
            r.abort();
        }
        if let Err(e) = self.db.release_lease(&self.name, &self.holder).await {
            tracing::warn!(lease = %self.name, error = %e, "releasing a lease failed; it expires by itself");
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(r) = self.renewing.take() else {
            return;
        };
        r.abort();
        let (db, name, holder) = (self.db.clone(), self.name.clone(), self.holder.clone());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = db.release_lease(&name, &holder).await;
            });
        }
    }
}
