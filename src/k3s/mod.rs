//! K3s knowledge that needs no SSH: versions and where the latest one is published.

pub mod release;
pub mod version;

pub use release::{GithubRelease, ReleaseError};
pub use version::Version;
