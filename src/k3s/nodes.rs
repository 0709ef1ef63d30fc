//! Node state from `kubectl get nodes -o json`: what a workflow needs to decide whether the
//! next server may join or restart.

use std::collections::BTreeMap;

use serde::Deserialize;

/// One node as the cluster sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeState {
    pub name: String,
    /// From the labels `node-role.kubernetes.io/<role>: "true"` (`control-plane`, `etcd`,
    /// `master`), sorted. Agents have none.
    pub roles: Vec<String>,
    /// `status.nodeInfo.kubeletVersion`, e.g. `v1.32.4+k3s1`; empty when not reported yet.
    pub kubelet_version: String,
    /// The condition of type `Ready` is `True`. Selected by type: its position in the list
    /// means nothing.
    pub ready: bool,
    /// The condition `EtcdIsVoter` K3s sets on servers with embedded etcd: `Some(false)` while
    /// the member is still a learner, `None` when the node has no such condition (agents,
    /// external datastores, a server that has not reported yet).
    pub etcd_voter: Option<bool>,
    /// The address of type `InternalIP`.
    pub internal_ip: Option<String>,
    /// Cordoned (`spec.unschedulable`).
    pub unschedulable: bool,
    pub labels: BTreeMap<String, String>,
}

impl NodeState {
    /// Runs the control plane: has the `control-plane`, `master` or `etcd` role.
    pub fn is_server(&self) -> bool {
        self.roles.iter().any(|r| matches!(r.as_str(), "control-plane" | "master" | "etcd"))
    }

    /// Ready **and** a voting etcd member: only then may the next server join or restart
    /// without risking quorum.
    pub fn healthy_server(&self) -> bool {
        self.ready && self.etcd_voter == Some(true)
    }
}

/// Why `kubectl get nodes -o json` output could not be read.
#[derive(Debug, thiserror::Error)]
pub enum NodesError {
    #[error("node list is not JSON: {message} (line {line}, column {column})")]
    NotJson { message: String, line: usize, column: usize },

    #[error("node list has no `items` array; expected the output of `kubectl get nodes -o json`")]
    MissingItems,

    #[error("node list: `{path}` {message}")]
    Invalid { path: String, message: String },

    #[error("node list: item {index} has no `metadata.name`")]
    MissingName { index: usize },
}

impl NodesError {
    /// A short, stable name of the error class, for scripts (`#{kind: ...}`).
    pub fn kind(&self) -> &'static str {
        match self {
            NodesError::NotJson { .. } => "not_json",
            NodesError::MissingItems => "missing_items",
            NodesError::Invalid { .. } => "invalid",
            NodesError::MissingName { .. } => "missing_name",
        }
    }
}

#[derive(Deserialize)]
struct NodeList {
    items: Option<Vec<Node>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Node {
    metadata: Metadata,
    spec: Spec,
    status: Status,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Metadata {
    name: Option<String>,
    labels: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Spec {
    unschedulable: bool,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Status {
    conditions: Vec<Condition>,
    addresses: Vec<Address>,
    #[serde(rename = "nodeInfo")]
    node_info: NodeInfo,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Condition {
    #[serde(rename = "type")]
    kind: String,
    status: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Address {
    #[serde(rename = "type")]
    kind: String,
    address: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NodeInfo {
    #[serde(rename = "kubeletVersion")]
    kubelet_version: String,
}

const ROLE_LABEL_PREFIX: &str = "node-role.kubernetes.io/";

/// Parses `kubectl get nodes -o json`, in the API's order. Optional fields may be missing
/// (a node that just registered has no conditions yet: not ready, voter unknown).
///
/// # Errors
///
/// [`NodesError`] when the text is not JSON, has no `items` array, a field has the wrong type
/// (named by its path, e.g. `items[2].metadata.labels`), or an item has no name.
pub fn parse_nodes(json: &str) -> Result<Vec<NodeState>, NodesError> {
    // Syntax first, so that "not JSON" and "JSON of the wrong shape" are told apart.
    let value: serde_json::Value = serde_json::from_str(json).map_err(|e| NodesError::NotJson {
        message: e.to_string().split(" at line ").next().unwrap_or_default().to_string(),
        line: e.line(),
        column: e.column(),
    })?;
    let list: NodeList = serde_path_to_error::deserialize(value)
        .map_err(|e| NodesError::Invalid { path: e.path().to_string(), message: e.into_inner().to_string() })?;
    let items = list.items.ok_or(NodesError::MissingItems)?;
    items.into_iter().enumerate().map(|(index, node)| node_state(index, node)).collect()
}

fn node_state(index: usize, node: Node) -> Result<NodeState, NodesError> {
    let name = node.metadata.name.filter(|n| !n.is_empty()).ok_or(NodesError::MissingName { index })?;
    let condition = |kind: &str| node.status.conditions.iter().find(|c| c.kind == kind).map(|c| c.status == "True");
    let roles = node
        .metadata
        .labels
        .iter()
        .filter_map(|(k, v)| k.strip_prefix(ROLE_LABEL_PREFIX).filter(|r| !r.is_empty() && v == "true"))
        .map(str::to_string)
        .collect();
    Ok(NodeState {
        name,
        roles,
        kubelet_version: node.status.node_info.kubelet_version,
        ready: condition("Ready").unwrap_or(false),
        etcd_voter: condition("EtcdIsVoter"),
        internal_ip: node.status.addresses.iter().find(|a| a.kind == "InternalIP").map(|a| a.address.clone()),
        unschedulable: node.spec.unschedulable,
        labels: node.metadata.labels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped like real `kubectl get nodes -o json` output from K3s: `Ready` is not the last
    /// condition, and the joining server is still a learner.
    const THREE_NODES: &str = r#"{
      "apiVersion": "v1",
      "kind": "List",
      "metadata": {"resourceVersion": ""},
      "items": [
        {
          "apiVersion": "v1", "kind": "Node",
          "metadata": {
            "name": "k3s-1",
            "labels": {
              "kubernetes.io/hostname": "k3s-1",
              "node-role.kubernetes.io/control-plane": "true",
              "node-role.kubernetes.io/etcd": "true",
              "node-role.kubernetes.io/master": "true"
            },
            "annotations": {"k3s.io/node-args": "[\"server\"]"}
          },
          "spec": {"podCIDR": "10.42.0.0/24", "providerID": "k3s://k3s-1"},
          "status": {
            "addresses": [
              {"type": "InternalIP", "address": "10.10.0.51"},
              {"type": "Hostname", "address": "k3s-1"}
            ],
            "conditions": [
              {"type": "Ready", "status": "True", "reason": "KubeletReady"},
              {"type": "EtcdIsVoter", "status": "True", "reason": "MemberNotLearner"},
              {"type": "MemoryPressure", "status": "False"},
              {"type": "DiskPressure", "status": "False"},
              {"type": "PIDPressure", "status": "False"}
            ],
            "nodeInfo": {"kubeletVersion": "v1.32.4+k3s1", "osImage": "Debian GNU/Linux 12"}
          }
        },
        {
          "metadata": {
            "name": "k3s-2",
            "labels": {
              "node-role.kubernetes.io/control-plane": "true",
              "node-role.kubernetes.io/etcd": "true"
            }
          },
          "spec": {"unschedulable": true},
          "status": {
            "addresses": [{"type": "InternalIP", "address": "10.10.0.52"}],
            "conditions": [
              {"type": "Ready", "status": "True"},
              {"type": "EtcdIsVoter", "status": "False", "reason": "MemberIsLearner"},
              {"type": "MemoryPressure", "status": "False"}
            ],
            "nodeInfo": {"kubeletVersion": "v1.32.4+k3s1"}
          }
        },
        {
          "metadata": {"name": "k3s-a1", "labels": {"node.longhorn.io/create-default-disk": "true"}},
          "status": {
            "conditions": [
              {"type": "Ready", "status": "False", "reason": "KubeletNotReady"},
              {"type": "MemoryPressure", "status": "True"}
            ],
            "nodeInfo": {"kubeletVersion": "v1.32.4+k3s1"}
          }
        }
      ]
    }"#;

    #[test]
    fn servers_agents_and_their_conditions_are_read() {
        let nodes = parse_nodes(THREE_NODES).unwrap();
        assert_eq!(nodes.len(), 3);
        let [first, second, agent] = &nodes[..] else { panic!() };
        assert_eq!(first.name, "k3s-1");
        assert_eq!(first.roles, ["control-plane", "etcd", "master"]);
        assert_eq!(first.kubelet_version, "v1.32.4+k3s1");
        assert_eq!(first.internal_ip.as_deref(), Some("10.10.0.51"));
        assert!(first.ready && first.etcd_voter == Some(true) && first.is_server() && first.healthy_server());
        assert!(!first.unschedulable);

        assert!(second.ready && second.is_server() && second.unschedulable);
        assert_eq!(second.etcd_voter, Some(false));
        assert!(!second.healthy_server(), "a learner is not healthy yet");

        assert!(agent.roles.is_empty() && !agent.is_server());
        assert!(!agent.ready && agent.etcd_voter.is_none() && agent.internal_ip.is_none());
        assert_eq!(agent.labels["node.longhorn.io/create-default-disk"], "true");
    }

    #[test]
    fn ready_is_taken_by_type_not_from_the_last_condition() {
        let json = r#"{"items":[{"metadata":{"name":"n"},"status":{"conditions":[
            {"type":"Ready","status":"False"},{"type":"DiskPressure","status":"True"}]}},
            {"metadata":{"name":"m"},"status":{"conditions":[
            {"type":"Ready","status":"True"},{"type":"MemoryPressure","status":"False"}]}}]}"#;
        let nodes = parse_nodes(json).unwrap();
        assert!(!nodes[0].ready);
        assert!(nodes[1].ready);
    }

    #[test]
    fn a_node_without_status_or_labels_is_not_ready_and_has_no_roles() {
        let nodes = parse_nodes(r#"{"items":[{"metadata":{"name":"fresh"}}]}"#).unwrap();
        let n = &nodes[0];
        assert!(!n.ready && n.roles.is_empty() && n.etcd_voter.is_none() && n.kubelet_version.is_empty());
        assert!(!n.healthy_server());
    }

    #[test]
    fn role_labels_other_than_true_do_not_count() {
        let json = r#"{"items":[{"metadata":{"name":"n","labels":{
            "node-role.kubernetes.io/control-plane":"false","node-role.kubernetes.io/worker":"true",
            "node-role.kubernetes.io/":"true"}}}]}"#;
        let n = &parse_nodes(json).unwrap()[0];
        assert_eq!(n.roles, ["worker"]);
        assert!(!n.is_server());
    }

    #[test]
    fn an_empty_list_is_no_nodes() {
        assert!(parse_nodes(r#"{"apiVersion":"v1","items":[],"kind":"List"}"#).unwrap().is_empty());
    }

    #[test]
    fn text_that_is_not_json_is_refused_with_its_position() {
        let err = parse_nodes("The connection to the server 127.0.0.1:6443 was refused").unwrap_err();
        assert_eq!(err.kind(), "not_json");
        assert!(err.to_string().contains("line 1, column"), "{err}");
    }

    #[test]
    fn json_without_items_is_refused_by_name() {
        let err = parse_nodes(r#"{"kind":"Node","metadata":{"name":"x"}}"#).unwrap_err();
        assert_eq!(err.kind(), "missing_items");
        assert!(err.to_string().contains("`items`"), "{err}");
        assert_eq!(parse_nodes("[]").unwrap_err().kind(), "invalid");
    }

    #[test]
    fn a_field_of_the_wrong_type_is_named_by_its_path() {
        let err =
            parse_nodes(r#"{"items":[{"metadata":{"name":"a"}},{"metadata":{"name":"b","labels":[1]}}]}"#).unwrap_err();
        assert_eq!(err.kind(), "invalid");
        assert!(err.to_string().contains("items[1].metadata.labels"), "{err}");
    }

    #[test]
    fn an_item_without_a_name_is_refused_with_its_index() {
        let err = parse_nodes(r#"{"items":[{"metadata":{"name":"a"}},{"metadata":{}}]}"#).unwrap_err();
        assert_eq!(err.kind(), "missing_name");
        assert!(err.to_string().contains("item 1"), "{err}");
    }
}
