//! Rate limiting: quotas and policies, the algorithms' pure steps, decisions and their headers,
//! and the limiter that runs a policy's step on a key's slot.
//!
//! * `quota`, `policy`: the value types a user writes (`"5/15m"`, burst, block, durability);
//! * `algo/`: one file per algorithm, each a pure `(state, now, cost) -> (state, answer)` over
//!   one packed `u64`, knowing nothing of tables;
//! * `decision`: what a check answers, and its HTTP header renderings;
//! * `limiter`: the policies' tables, the one check path, leases and persistence;
//! * `keys`: client keys (IP addresses keyed by prefix);
//! * `error`: the limiter's errors;
//! * `remote/`: policies decided on Redis: one Lua script per algorithm and the glue from a
//!   script's reply to the same states and decisions as the local table's.
//!
//! May import: `core`, `store`. Never `cors`, `config`, `gate` or `ffi`.

pub(crate) mod algo;
pub(crate) mod decision;
pub(crate) mod error;
pub(crate) mod keys;
pub(crate) mod limiter;
pub(crate) mod policy;
pub(crate) mod quota;
pub(crate) mod remote;
