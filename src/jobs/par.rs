//! Pure CPU work of a page spread over the cores: scoped threads, results in order.

/// Runs `f` over `items` in one chunk per core (up to 8), results in chunk order. Fewer
/// than 2,000 items run on the calling thread. The threads are `model::frame`'s: one way
/// of spreading pure work over the cores.
pub fn in_chunks<T: Sync, R: Send>(items: &[T], f: impl Fn(&[T]) -> R + Sync) -> Vec<R> {
    let threads = crate::model::frame::threads().clamp(1, 8);
    if threads == 1 || items.len() < 2_000 {
        return vec![f(items)];
    }
    off_runtime(|| crate::model::frame::in_chunks(items.len(), threads, |r| f(&items[r])))
}

/// Runs blocking work called from async code without holding up the tasks queued on this
/// runtime thread: on a multi-threaded runtime the thread first hands them to another
/// (`block_in_place`). Without it, a planning page (seconds of CPU on every core) held a
/// worker thread whose queued tasks (a queue's poll, a tick) could not be stolen, and
/// jobs started seconds after their tick. Elsewhere (a current-thread runtime, a
/// blocking thread, no runtime) it just runs `work`.
pub fn off_runtime<R>(work: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

/// Maps `items` with `f` on every core, keeping their order.
pub fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    in_chunks(items, |chunk| chunk.iter().map(&f).collect::<Vec<R>>())
        .into_iter()
        .flatten()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_kept_in_chunks_and_maps() {
        let items: Vec<u32> = (0..10_000).collect();
        assert_eq!(
            par_map(&items, |x| x * 2),
            items.iter().map(|x| x * 2).collect::<Vec<_>>()
        );
        let sums: u64 = in_chunks(&items, |c| c.iter().map(|&x| x as u64).sum::<u64>())
            .into_iter()
            .sum();
        assert_eq!(sums, (0..10_000u64).sum::<u64>());
        assert_eq!(in_chunks(&items[..5], |c| c.len()), vec![5]);
    }
}
