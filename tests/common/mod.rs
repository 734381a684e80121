//! Helpers shared by the integration tests. Each test file that needs them says `mod common;`;
//! not every file uses every helper.
#![allow(dead_code)]

pub mod alloc;
pub mod model;
pub mod redis;
