//! Proxmox VE: the API client, its TLS trust, and the types it reads. Knows nothing of Rhai.

mod agent;
mod client;
mod error;
mod path;
mod power;
mod snapshot;
mod tasks;
pub mod tls;
mod types;

pub use client::{PveClient, PveSettings, encode_form};
pub use error::PveError;
pub use path::{ApiPath, check_segment};
pub use power::{ParamValue, TASK_LOG_TAIL, WriteMethod, WriteRequest};
pub use snapshot::{SNAPSHOT_NAME_MAX, Snapshot, check_snapshot_name, parse_snapshots};
pub use tasks::{TaskOutcome, TaskState, Upid, task_succeeded};
pub use tls::{format_fingerprint, parse_fingerprint};
pub use types::{
    Cluster, GuestIp, NodeInfo, Vm, VmStatus, normalize_tags, parse_agent_interfaces, parse_nodes, parse_resources,
    parse_vm_status,
};
