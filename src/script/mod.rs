//! The Rhai host: one engine with every primitive registered, the module and script
//! resolvers, the runner, the REPL and the API docs generated from the engine.

pub mod api;
pub mod diagnostics;
pub mod doc;
pub mod embedded;
pub mod engine;
pub mod host;
pub mod repl;
pub mod resolver;
pub mod runner;

pub use engine::build_engine;
pub use host::{Host, RunOptions};
