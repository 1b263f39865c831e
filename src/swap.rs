//! Running state that is replaced whole while requests are served: the TLS
//! configs, the policy snapshot, the console users.
//!
//! Every reader takes one consistent value for its whole piece of work (a
//! request holds one policy snapshot from start to end, so a reload in the
//! middle cannot mix two versions), and a value that fails to build is never
//! swapped in. Reads are lock-free ([`arc_swap`]): the hot path takes the
//! policy snapshot on every request. A generation counter lets long-lived
//! holders (open connections) notice that a new value arrived.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::watch;

/// A value swapped whole, with a generation that counts the swaps.
#[derive(Debug)]
pub struct Swap<T> {
    current: ArcSwap<T>,
    /// Bumped on every swap; subscribers wake.
    generation: watch::Sender<u64>,
}

impl<T> Swap<T> {
    /// Starts with `value` at generation 0.
    pub fn new(value: T) -> Self {
        Self {
            current: ArcSwap::from_pointee(value),
            generation: watch::Sender::new(0),
        }
    }

    /// The current value.
    pub fn get(&self) -> Arc<T> {
        self.current.load_full()
    }

    /// Replaces the value.
    pub fn set(&self, value: T) {
        self.current.store(Arc::new(value));
        self.generation.send_modify(|g| *g += 1);
    }

    /// Builds a new value with `build` and swaps it in only when it built;
    /// the running one stays otherwise.
    pub fn replace_with<E>(&self, build: impl FnOnce() -> Result<T, E>) -> Result<(), E> {
        self.set(build()?);
        Ok(())
    }

    /// How many swaps happened.
    pub fn generation(&self) -> u64 {
        *self.generation.borrow()
    }

    /// Wakes on every swap.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_build_keeps_the_running_value() {
        let s = Swap::new(1);
        let held = s.get();
        assert!(s.replace_with(|| Err::<i32, &str>("bad file")).is_err());
        assert_eq!((*s.get(), s.generation()), (1, 0));
        s.replace_with(|| Ok::<_, ()>(2)).unwrap();
        assert_eq!((*s.get(), s.generation(), *held), (2, 1, 1));
    }
}
