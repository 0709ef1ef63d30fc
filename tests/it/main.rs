//! The one integration test binary.

#[path = "../lab/mod.rs"]
mod lab;
mod ssh;
