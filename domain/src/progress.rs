//! How far long work has got (a demo seed, an import, a rebuild, a verification): the command
//! line shows it to the person waiting; everywhere else it is ignored.

/// Told the units of work done so far, now and then, never fewer than the time before.
pub trait Progress: Send + Sync {
    fn reached(&self, done: u64);
}

/// Progress nobody watches.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unwatched;

impl Progress for Unwatched {
    fn reached(&self, _done: u64) {}
}
