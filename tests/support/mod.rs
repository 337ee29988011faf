//! Shared harnesses for the integration tests: each one starts (or finds) a
//! real service and hands out fresh, isolated names so tests can share it.
#![allow(dead_code, unused_imports)]

pub mod cluster;
pub mod daemon;
pub mod kafka;
pub mod poison;
pub mod rebuild;
pub mod redis;
pub mod replay;
pub mod shop;
pub mod trials;
