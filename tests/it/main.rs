//! The integration tests: one binary, running the real `k3sx` executable.

mod check_version;
mod cli;
mod config;
mod docs;
mod repl;
mod scripts;
mod support;
