//! The lowest layer: what every other layer stands on, knowing nothing of them.
//!
//! * `sync`: the one switch between std and loom atomics;
//! * `clock`: time as Unix-epoch nanoseconds, the same in every process and after a restart;
//! * `keyhash`: the keyed hash that reduces a client key to a persisted fingerprint;
//! * `table`: the fixed-capacity lock-free slots, which ask their states only the `Reclaim`
//!   questions and know no algorithm;
//! * `fork`: noticing a `fork()`, after which a parent's threads are missing;
//! * `stats`: striped counters that cost the check path no locked instruction;
//! * `texts`: the texts a compiled config owns, read by reference while it lives;
//! * `topk`: the Space-Saving sketch of the keys counted most, in fixed memory.
//!
//! May import: nothing else of the crate.

pub(crate) mod clock;
pub(crate) mod fork;
pub(crate) mod keyhash;
pub(crate) mod stats;
pub(crate) mod sync;
pub(crate) mod table;
pub(crate) mod texts;
pub(crate) mod topk;
