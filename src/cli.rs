//! The command line (clap derive). Dispatch lives in `app.rs`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use serde::Serialize;

#[derive(Debug, Parser)]
#[command(name = "k3sx", version, about = "Build and run K3s clusters on Proxmox VE VMs, every workflow a Rhai script")]
pub struct Cli {
    /// Configuration file (default: ./k3sx.json, else ~/.config/k3sx/config.json)
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Make every read, print every change in plan order, make none
    #[arg(long, global = true)]
    pub dry_run: bool,
    /// A dry run that exits 3 when anything would change (drift checks in CI)
    #[arg(long, global = true)]
    pub expect_no_changes: bool,
    /// Answer yes to confirmation prompts
    #[arg(long, short = 'y', global = true)]
    pub yes: bool,
    /// Machine-readable output where a command prints data
    #[arg(long, global = true)]
    pub json: bool,
    /// More detail on stderr (-v, -vv)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only warnings and errors on stderr
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// No colors (also NO_COLOR)
    #[arg(long, global = true)]
    pub no_color: bool,
    /// Override a configuration value, e.g. --set k3s.channel=latest (repeatable)
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a Rhai script (a path, or a name in ./scripts, the user scripts dir, the built-ins)
    Run {
        script: String,
        #[command(flatten)]
        args: ArgFlags,
        /// Positional arguments for the script (ARGS.argv)
        #[arg(last = true)]
        argv: Vec<String>,
    },
    /// Interactive Rhai session with every primitive and module loaded
    Repl,
    /// List the K3s VMs by role: node, vmid, name, status, IP
    Discover(Workflow<DiscoverFlags>),
    /// Start the K3s VMs and wait for the tasks
    Start(Workflow<PowerFlags>),
    /// Shut the K3s VMs down gracefully and wait
    Stop(Workflow<PowerFlags>),
    /// Reboot running VMs, start stopped ones, and wait until they run
    Restart(Workflow<PowerFlags>),
    /// Assign static IPs through cloud-init
    ConfigureIps(Workflow<ConfigureIpsFlags>),
    /// Install the K3s cluster (kube-vip, MetalLB, Longhorn) and write the kubeconfig
    Provision(Workflow<ProvisionFlags>),
    /// Write the cluster's kubeconfig into ~/.kube/config
    Kubeconfig(Workflow<NoFlags>),
    /// Compare the configured K3s version with the latest release
    CheckVersion(Workflow<CheckVersionFlags>),
    /// Upgrade K3s minor by minor: servers one at a time (each an etcd voter again), then agents
    Upgrade(Workflow<UpgradeFlags>),
    /// Take a node out of the cluster: drain, delete its Node (and etcd member), uninstall K3s
    RemoveNode(Workflow<RemoveNodeFlags>),
    /// Uninstall K3s from every node, remove the VIP and the kubeconfig context
    Teardown(Workflow<TeardownFlags>),
    /// Read-only preflight of Proxmox, the VMs and the nodes, each check with its fix
    Doctor(Workflow<NoFlags>),
    /// List, show and eject the built-in scripts and modules
    Scripts {
        #[command(subcommand)]
        action: ScriptsCommand,
    },
    /// The script API: every function with its signature and documentation
    Doc {
        /// One function (`compare`, `k3s::compare`) or namespace (`k3s`)
        name: Option<String>,
        /// Write Rhai definition files for editors into DIR
        #[arg(long, value_name = "DIR")]
        definitions: Option<PathBuf>,
        /// The whole reference as Markdown (docs/api.md)
        #[arg(long)]
        markdown: bool,
    },
    /// Show the merged configuration
    Config {
        #[command(subcommand)]
        action: ConfigCommand,
    },
    /// Print a shell completion script
    Completions { shell: clap_complete::Shell },
}

#[derive(Debug, Subcommand)]
pub enum ScriptsCommand {
    /// Built-in and local scripts and modules, and which local file overrides which built-in
    List,
    /// Print a script or module (the one that would run)
    Show {
        name: String,
        /// Show the built-in version even when a local copy overrides it
        #[arg(long)]
        builtin: bool,
    },
    /// Copy built-ins out for editing (all when no NAME is given)
    Eject {
        names: Vec<String>,
        /// Directory to copy into (default: ./scripts for scripts, ./stdlib for modules)
        #[arg(long, value_name = "DIR")]
        to: Option<PathBuf>,
        /// Overwrite existing files
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Every value with where it came from (default, file:line, env VAR, flag); secrets redacted
    Show,
}

/// `--arg k=v` values for a script (ARGS.k).
#[derive(Debug, Args, Default)]
pub struct ArgFlags {
    /// A value for the script: ARGS.KEY (repeatable; numbers and true/false are typed)
    #[arg(long = "arg", value_name = "KEY=VALUE")]
    pub args: Vec<String>,
}

/// A workflow shortcut: its own flags become ARGS, plus any `--arg k=v`.
#[derive(Debug, Args)]
pub struct Workflow<F: Args> {
    #[command(flatten)]
    pub flags: F,
    #[command(flatten)]
    pub extra: ArgFlags,
}

#[derive(Debug, Args, Serialize)]
pub struct NoFlags {}

#[derive(Debug, Args, Serialize)]
pub struct CheckVersionFlags {
    /// Rewrite k3s.version in the config file to the latest (asks unless --yes)
    #[arg(long)]
    pub update: bool,
}

#[derive(Debug, Args, Serialize)]
pub struct DiscoverFlags {
    /// Skip the per-VM reads that find IP addresses
    #[arg(long)]
    pub no_ip: bool,
    /// List VMs on unreachable Proxmox nodes too, as `unknown`
    #[arg(long)]
    pub include_unreachable: bool,
}

#[derive(Debug, Args, Serialize)]
pub struct PowerFlags {
    /// How many VMs are handled at once
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub parallel: u32,
    /// Seconds to wait for each VM
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub timeout: u32,
    /// stop: hard-stop VMs whose graceful shutdown timed out
    #[arg(long)]
    pub force: bool,
    /// Only VMs of this role
    #[arg(long, value_name = "ROLE", value_enum)]
    pub role: Option<Role>,
    /// Only these VMs (repeatable)
    #[arg(long, value_name = "VMID")]
    pub vm: Vec<u32>,
}

/// A K3s role tag: what `--role` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Server,
    Agent,
    Storage,
}

#[derive(Debug, Args, Serialize)]
pub struct ProvisionFlags {
    /// How many nodes are read, and agents installed, at once
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub parallel: u32,
    /// Seconds each node may take to become Ready (servers: and an etcd voter)
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub timeout: u32,
}

#[derive(Debug, Args, Serialize)]
pub struct ConfigureIpsFlags {
    /// Afterwards start or reboot the VMs whose cloud-init changed, and wait
    #[arg(long)]
    pub restart: bool,
    /// Seconds to wait for each restart
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub timeout: u32,
    /// How many VMs are handled at once
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub parallel: u32,
}

#[derive(Debug, Args, Serialize)]
pub struct UpgradeFlags {
    /// The version to upgrade to (default: k3s.version)
    #[arg(long, value_name = "VERSION", conflicts_with = "channel")]
    pub to: Option<String>,
    /// Upgrade to the newest release of this channel (stable, latest, v1.32, ...)
    #[arg(long, value_name = "NAME")]
    pub channel: Option<String>,
    /// A Proxmox snapshot of each VM before its step; a node that fails is offered the rollback
    #[arg(long)]
    pub snapshot: bool,
    /// Cordon and drain each node before its step, uncordon it after
    #[arg(long)]
    pub drain: bool,
    /// How many agents are upgraded at once (servers: always one at a time)
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub parallel: u32,
    /// Seconds each node may take to come back on the new version (servers: and an etcd voter)
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub timeout: u32,
}

#[derive(Debug, Args, Serialize)]
pub struct RemoveNodeFlags {
    /// The VM to remove: its vmid or its name
    #[arg(value_name = "VM")]
    pub vm: String,
    /// Remove even the last server, or one that leaves exactly 2 (an etcd of 2 survives no failure)
    #[arg(long)]
    pub force: bool,
    /// Seconds for the drain and for the etcd member to go
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub timeout: u32,
}

#[derive(Debug, Args, Serialize)]
pub struct TeardownFlags {
    /// Delete the local cluster token file too (k3s.token_file; kept by default)
    #[arg(long)]
    pub forget_token: bool,
    /// How many agents are uninstalled at once
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    pub parallel: u32,
}
