//! K3s knowledge that needs no SSH: versions and where the latest one is published, the
//! cluster token, the install invocation, the manifests k3sx deploys, node state and the
//! user's kubeconfig. Plain Rust; `src/script/api/k3s.rs` adapts it to Rhai.

pub mod install;
pub mod kubeconfig;
pub mod lifecycle;
pub mod manifests;
pub mod net;
pub mod nodes;
pub mod release;
pub mod token;
pub mod version;

pub use install::{InstallError, InstallSource, InstallSpec, NodeRole, uninstall_command};
pub use kubeconfig::KubeconfigError;
pub use manifests::ManifestError;
pub use net::{RouteDevice, RouteError, default_interface_from_route_json};
pub use nodes::{NodeState, NodesError, parse_nodes};
pub use release::{GithubRelease, ReleaseError};
pub use token::{TokenError, generate_token, read_token, token_file_content};
pub use version::Version;
