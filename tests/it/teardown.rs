//! `remove-node` and `teardown` end to end on a cluster provisioned on the K3s stand-in lab.

use crate::lab::k3s_lab::{K3sLab, K3sOptions};
use crate::provision::Site;

const VERSION: &str = "v1.32.4+k3s1";

fn node_names(site: &Site) -> Vec<String> {
    let mut names: Vec<String> =
        site.lab.nodes().iter().map(|n| n["metadata"]["name"].as_str().unwrap().to_string()).collect();
    names.sort();
    names
}

#[test]
fn removing_a_server_is_refused_when_it_would_leave_two_and_an_agent_goes_alone() {
    let Some(site) = Site::at_version(4, 3, VERSION, K3sOptions::default()) else { return };
    site.provision(&[]).status(0);
    let run = site.run(&["remove-node", "102"]).status(1);
    run.stderr_has("leaves exactly 2 servers").stderr_has("--force");
    assert_eq!(site.lab.nodes().len(), 4, "nothing was removed");
    assert!(site.lab.events_of("kubectl-delete-node").is_empty());
    assert!(site.lab.nodes().iter().all(|n| n["spec"]["unschedulable"].is_null()), "nothing was cordoned");
    assert!(!site.lab.k3s_files(1).is_empty(), "the refused server kept K3s");

    // The agent, by VM name: drained, uninstalled, its Node deleted; the others untouched.
    let installs = site.lab.installs().len();
    site.run(&["remove-node", "k3s-201"]).status(0);
    assert_eq!(node_names(&site), ["k3sx-lab-1", "k3sx-lab-2", "k3sx-lab-3"]);
    assert!(site.lab.k3s_files(3).is_empty(), "{:?}", site.lab.k3s_files(3));
    let nodes = site.lab.nodes();
    assert!(nodes.iter().all(K3sLab::is_ready), "{nodes:?}");
    assert_eq!(site.lab.etcd_members().len(), 3);
    assert_eq!(site.lab.installs().len(), installs, "no install ran");
    // A second removal of the same VM has nothing to do.
    site.run(&["remove-node", "k3s-201"]).status(0).stderr_has("nothing to do");
}

#[test]
fn removing_a_server_of_four_deletes_its_node_and_etcd_member_and_leaves_no_vip() {
    let Some(site) = Site::at_version(5, 4, VERSION, K3sOptions::default()) else { return };
    site.provision(&[]).status(0);
    let vip = site.lab.vip();
    let holder = site.lab.hosts_with_address(vip);
    assert_eq!(holder.len(), 1, "kube-vip put the VIP on one server: {holder:?}");
    let i = holder[0];
    let vmid = (101 + i).to_string();
    let name = format!("k3sx-lab-{}", i + 1);

    // The dry run lists every step and changes nothing.
    let dry = site.run(&["--dry-run", "remove-node", &vmid]).status(0);
    let dry = dry.stderr_has("kubectl cordon").stderr_has("kubectl drain").stderr_has("--ignore-daemonsets");
    let dry = dry.stderr_has("systemctl stop k3s").stderr_has(&format!("kubectl delete node {name}"));
    let dry = dry.stderr_has("k3s-uninstall.sh").stderr_has(&format!("ip addr del {vip}/"));
    assert!(!dry.stderr.contains("--force"), "never a forced delete: {}", dry.stderr);
    assert_eq!(site.lab.nodes().len(), 5);
    assert_eq!(site.lab.etcd_members().len(), 4);

    site.run(&["remove-node", &vmid, "--timeout", "60"]).status(0);
    let deletes = site.lab.events_of("kubectl-delete-node");
    assert_eq!(deletes.len(), 1, "{deletes:?}");
    assert_eq!((deletes[0]["node"].as_str(), deletes[0]["force"].as_bool()), (Some(name.as_str()), Some(false)));
    assert!(site.lab.node(&name).is_none(), "the Node is gone");
    let members = site.lab.etcd_members();
    assert!(members.iter().all(|m| m["node"] != name.as_str()), "its etcd member is gone: {members:?}");
    assert_eq!(members.len(), 3, "{members:?}");
    assert!(members.iter().all(|m| m["voter"] == true), "the others stay voters: {members:?}");
    assert!(!site.lab.nic_addresses(i).contains(&vip.to_string()), "the VIP was left on the removed node");
    assert!(site.lab.k3s_files(i).is_empty(), "{:?}", site.lab.k3s_files(i));
    let nodes = site.lab.wait_nodes(std::time::Duration::from_secs(10), |n| n.iter().all(K3sLab::is_ready));
    assert_eq!(nodes.len(), 4);
}

#[test]
fn teardown_removes_k3s_the_vip_and_the_context_and_a_second_run_has_nothing_to_do() {
    let Some(site) = Site::at_version(5, 3, VERSION, K3sOptions::default()) else { return };
    // An unrelated context the user has must survive.
    site.write_other_kubeconfig();
    site.provision(&[]).status(0);
    let vip = site.lab.vip();
    assert_eq!(site.lab.hosts_with_address(vip).len(), 1);

    // Without --yes and without a terminal: refused, nothing changed.
    site.run(&["teardown"]).status(1).stderr_has("--yes");
    assert!((0..5).all(|i| !site.lab.k3s_files(i).is_empty()));

    // The dry run: every node, every step, nothing done.
    let dry = site.run(&["--dry-run", "teardown"]).status(0);
    for i in 0..5 {
        let name = format!("k3sx-lab-{}", i + 1);
        assert!(dry.stdout.lines().any(|l| l.contains(&name) && l.contains("uninstall")), "{name}: {}", dry.stdout);
    }
    let dry = dry.stderr_has("k3s-agent-uninstall.sh").stderr_has("k3s-uninstall.sh").stderr_has("ip addr del");
    dry.stderr_has("kubeconfig without context");
    assert!((0..5).all(|i| !site.lab.k3s_files(i).is_empty()), "a dry run uninstalled");
    assert!(std::fs::read_to_string(site.kubeconfig()).unwrap().contains("k3sx"));

    let started = site.lab.events().len();
    site.run(&["--yes", "teardown"]).status(0);
    for i in 0..5 {
        assert!(site.lab.k3s_files(i).is_empty(), "host {i}: {:?}", site.lab.k3s_files(i));
        assert!(site.lab.nic_addresses(i).is_empty(), "host {i}: {:?}", site.lab.nic_addresses(i));
    }
    // Agents first, the bootstrap server last.
    let uninstalls: Vec<u64> = site.lab.events()[started..]
        .iter()
        .filter(|e| e["event"] == "uninstall")
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    assert_eq!(uninstalls.len(), 5, "{uninstalls:?}");
    assert!(uninstalls[..2].iter().all(|i| *i > 3), "agents first: {uninstalls:?}");
    assert_eq!(uninstalls[4], 1, "the bootstrap server last: {uninstalls:?}");
    let kubeconfig = std::fs::read_to_string(site.kubeconfig()).unwrap();
    assert!(!kubeconfig.contains("k3sx"), "{kubeconfig}");
    assert!(kubeconfig.contains("other.example") && kubeconfig.contains("current-context: other"), "{kubeconfig}");
    assert!(site.token_file().exists(), "the token is kept without --forget-token");

    // A second teardown: nothing to do, no change; --forget-token then deletes the token only.
    site.run(&["--yes", "teardown"]).status(0).stderr_has("nothing to do");
    site.run(&["--expect-no-changes", "teardown"]).status(0);
    site.run(&["--yes", "teardown", "--forget-token"]).status(0).stderr_has("deleted the cluster token file");
    assert!(!site.token_file().exists());
}
