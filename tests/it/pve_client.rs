//! The Proxmox client against a real fakepve process: auth, TLS trust, encoding, discovery, faults.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k3sx::pve::{PveClient, PveError, PveSettings};
use k3sx::secret::Secret;
use serde_json::{Value, json};

use crate::lab::pve::{FakePve, PASSWORD, USER};

const TOKEN_ID: &str = "root@pam!k3sx";
const TOKEN_SECRET: &str = "0b7e1c2a-token-secret-9f4d";

/// Three nodes (pve3 offline), VMs with every tag spelling, a template, a locked VM, a container.
fn cluster_scenario() -> Value {
    json!({
        "tokens": {TOKEN_ID: TOKEN_SECRET},
        "nodes": ["pve1", "pve2", {"name": "pve3", "online": false}],
        "vms": [
            {"vmid": 102, "name": "k3s-agent-1", "node": "pve2", "status": "running", "tags": "team-a,k3s-agent",
             "agent": {"interfaces": [
                {"name": "lo", "ip-addresses": [{"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8}]},
                {"name": "eth0", "ip-addresses": [
                    {"ip-address": "10.10.0.201", "ip-address-type": "ipv4", "prefix": 24},
                    {"ip-address": "fe80::be24:11ff:fe00:1", "ip-address-type": "ipv6", "prefix": 64}]}]}},
            {"vmid": 101, "name": "k3s-server-1", "node": "pve1", "status": "running", "tags": "K3S-Server",
             "config": {"ipconfig0": "ip=10.10.0.50/24,gw=10.10.0.1", "cores": 2}},
            {"vmid": 103, "node": "pve1", "status": "stopped", "tags": "k3s-server;prod"},
            {"vmid": 104, "name": "plain", "node": "pve1", "status": "stopped"},
            {"vmid": 105, "name": "busy", "node": "pve2", "status": "running", "tags": "k3s-agent", "lock": "backup"},
            {"vmid": 900, "name": "tpl", "node": "pve1", "status": "stopped", "tags": "k3s-server", "template": true},
            {"vmid": 301, "name": "far", "node": "pve3", "status": "running", "tags": "k3s-agent"}
        ],
        "cts": [{"vmid": 200, "name": "ct", "node": "pve1", "status": "running", "tags": "k3s-server"}]
    })
}

/// The cluster scenario and a token-authenticated client trusting the lab's CA.
fn token_lab() -> Option<(FakePve, PveClient)> {
    let pve = FakePve::start(cluster_scenario())?;
    let client = PveClient::new(token_settings(&pve)).unwrap();
    Some((pve, client))
}

fn settings(pve: &FakePve) -> PveSettings {
    let mut s = PveSettings::new(pve.host(), USER);
    s.port = pve.port();
    s.ca_file = Some(pve.ca_file().to_path_buf());
    s.connect_timeout = Duration::from_secs(3);
    s.timeout = Duration::from_secs(10);
    s.retries = 2;
    s
}

fn token_settings(pve: &FakePve) -> PveSettings {
    let mut s = settings(pve);
    s.token_id = Some(TOKEN_ID.into());
    s.token_secret = Some(Secret::new(TOKEN_SECRET));
    s
}

fn password_settings(pve: &FakePve, password: &str) -> PveSettings {
    let mut s = settings(pve);
    s.password = Some(Secret::new(password));
    s
}

fn api_calls(pve: &FakePve) -> Vec<String> {
    pve.requests().iter().map(|r| format!("{} {}", r.method, r.api_path())).collect()
}

#[test]
fn client_is_send_and_sync() {
    fn shared<T: Send + Sync>() {}
    shared::<PveClient>();
}

#[test]
fn token_auth_discovers_nodes_and_vms_in_one_request() {
    let Some((pve, client)) = token_lab() else {
        return;
    };
    let cluster = client.cluster().unwrap();

    assert_eq!(api_calls(&pve), ["GET /cluster/resources"]);
    assert_eq!(client.requests_sent(), 1);
    // node vmid name status tags template lock
    let vms: Vec<String> = cluster
        .vms
        .iter()
        .map(|v| {
            let name = v.name.as_deref().unwrap_or("-");
            let lock = v.lock.as_deref().unwrap_or("-");
            let tags = v.tags.join(",");
            format!("{} {} {name} {} [{tags}] {} {lock}", v.node, v.vmid, v.status, v.template)
        })
        .collect();
    assert_eq!(
        vms,
        [
            "pve1 101 k3s-server-1 running [k3s-server] false -",
            "pve1 103 - stopped [k3s-server,prod] false -",
            "pve1 104 plain stopped [] false -",
            "pve1 900 tpl stopped [k3s-server] true -",
            "pve2 102 k3s-agent-1 running [team-a,k3s-agent] false -",
            "pve2 105 busy running [k3s-agent] false backup",
            "pve3 301 far unknown [k3s-agent] false -",
        ],
        "qemu only (container 200 dropped), sorted by (node, vmid), tags normalised"
    );
    let nodes: Vec<(&str, bool)> = cluster.nodes.iter().map(|n| (n.name.as_str(), n.online)).collect();
    assert_eq!(nodes, [("pve1", true), ("pve2", true), ("pve3", false)]);
    assert_eq!(cluster.offline_nodes(), ["pve3"]);
}

#[test]
fn token_id_without_user_is_completed_from_the_user() {
    let Some(pve) = FakePve::start(cluster_scenario()) else {
        return;
    };
    let mut s = token_settings(&pve);
    s.token_id = Some("k3sx".into());
    let nodes = PveClient::new(s).unwrap().nodes().unwrap();
    assert_eq!(nodes.len(), 3);
}

#[test]
fn wrong_token_secret_is_an_auth_error_without_the_secret() {
    let Some(pve) = FakePve::start(cluster_scenario()) else {
        return;
    };
    let mut s = token_settings(&pve);
    s.token_secret = Some(Secret::new("not-the-token-secret"));
    let err = PveClient::new(s).unwrap().cluster().unwrap_err();
    assert_eq!(err.kind(), "auth", "{err}");
    assert!(err.is_setup_error());
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("not-the-token-secret"), "{shown}");
}

#[test]
fn password_auth_logs_in_once_and_encodes_the_password() {
    // `;`, `&` and a space would cut the login form short if sent unencoded.
    let password = "pa;ss&w ord";
    let Some(pve) = FakePve::start(json!({"password": password, "vms": [{"vmid": 101, "name": "a"}]})) else {
        return;
    };
    let client = PveClient::new(password_settings(&pve, password)).unwrap();
    assert_eq!(client.cluster().unwrap().vms.len(), 1);
    client.vm_status("pve1", 101).unwrap();
    assert_eq!(
        api_calls(&pve),
        ["POST /access/ticket", "GET /cluster/resources", "GET /nodes/pve1/qemu/101/status/current"]
    );
    assert_eq!(client.requests_sent(), 3);
    let login = &pve.requests()[0];
    assert_eq!(login.body, "username=root%40pam&password=***", "fakepve redacts the password it logs");
}

#[test]
fn parallel_first_requests_share_one_login() {
    let Some(pve) = FakePve::start(json!({"vms": [{"vmid": 101, "name": "a"}]})) else {
        return;
    };
    let client = Arc::new(PveClient::new(password_settings(&pve, PASSWORD)).unwrap());
    std::thread::scope(|s| {
        for _ in 0..6 {
            let client = client.clone();
            s.spawn(move || client.vm_status("pve1", 101).unwrap());
        }
    });
    let logins = pve.requests().iter().filter(|r| r.api_path() == "/access/ticket").count();
    assert_eq!(logins, 1);
}

#[test]
fn revoked_ticket_is_renewed_once_and_the_write_retried() {
    let Some(pve) = FakePve::start(json!({"vms": [{"vmid": 101, "name": "a"}]})) else {
        return;
    };
    let client = PveClient::new(password_settings(&pve, PASSWORD)).unwrap();
    client.cluster().unwrap();
    pve.revoke_tickets();
    client.put("/nodes/pve1/qemu/101/config", &[("description".into(), "renewed".into())]).unwrap();
    assert_eq!(
        api_calls(&pve),
        [
            "POST /access/ticket",
            "GET /cluster/resources",
            "PUT /nodes/pve1/qemu/101/config",
            "POST /access/ticket",
            "PUT /nodes/pve1/qemu/101/config",
        ]
    );
    assert_eq!(pve.vm(101)["config"]["description"], "renewed");
}

#[test]
fn wrong_password_is_an_auth_error_that_never_shows_the_password() {
    let Some(pve) = FakePve::start(json!({})) else {
        return;
    };
    let wrong = "Wr0ng-Pa55word-xyz";
    let logs = capture_traces(|| {
        let client = PveClient::new(password_settings(&pve, wrong)).unwrap();
        let err = client.cluster().unwrap_err();
        assert_eq!(err.kind(), "auth", "{err}");
        let message = err.to_string();
        assert!(
            message.starts_with(&format!("authentication failed for `{USER}` at {}:{}", pve.host(), pve.port())),
            "{message}"
        );
        let shown = format!("{message} {err:?} {client:?}");
        assert!(!shown.contains(wrong), "{shown}");
        let again = client.vm_status("pve1", 101).unwrap_err();
        assert_eq!(again.kind(), "auth");
        assert_eq!(api_calls(&pve), ["POST /access/ticket"], "a refused password is not sent again");
    });
    assert!(logs.contains("logging in"), "the trace capture works: {logs}");
    assert!(!logs.contains(wrong), "{logs}");
}

/// Runs `f` with every tracing event down to TRACE written to a string, which is returned.
fn capture_traces(f: impl FnOnce()) -> String {
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl Write for Buffer {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    String::from_utf8_lossy(&buffer.0.lock().unwrap()).into_owned()
}

#[test]
fn untrusted_certificate_is_a_tls_error_showing_the_server_fingerprint() {
    let Some(pve) = FakePve::start(cluster_scenario()) else {
        return;
    };
    let mut s = token_settings(&pve);
    s.ca_file = None;
    let err = PveClient::new(s).unwrap().cluster().unwrap_err();
    let PveError::Tls { fingerprint, pinned, .. } = &err else {
        panic!("expected a TLS error, got {err}")
    };
    assert_eq!(fingerprint.as_deref(), Some(pve.fingerprint()));
    assert!(!pinned);
    let message = err.to_string();
    for needle in
        ["PROXMOX_CA_FILE", "PROXMOX_TLS_FINGERPRINT", "PROXMOX_SSL_VERIFY=false", pve.fingerprint(), pve.host()]
    {
        assert!(message.contains(needle), "`{needle}` missing from: {message}");
    }
    assert_eq!(err.kind(), "tls");
    assert!(err.is_setup_error());
    assert!(pve.requests().is_empty(), "nothing reached the API");
}

#[test]
fn ca_file_is_trusted() {
    let Some((_pve, client)) = token_lab() else {
        return;
    };
    assert_eq!(client.nodes().unwrap().len(), 3);
}

#[test]
fn pinned_fingerprint_is_accepted_in_any_spelling() {
    let Some(pve) = FakePve::start(cluster_scenario()) else {
        return;
    };
    let bare_lower = pve.fingerprint().replace(':', "").to_lowercase();
    for pin in [pve.fingerprint().to_string(), pve.fingerprint().to_lowercase(), bare_lower] {
        let mut s = token_settings(&pve);
        s.ca_file = None;
        s.fingerprint = Some(pin.clone());
        PveClient::new(s).unwrap().nodes().unwrap_or_else(|e| panic!("pin {pin}: {e}"));
    }
}

#[test]
fn wrong_pin_is_refused_and_shows_the_real_fingerprint() {
    let Some(pve) = FakePve::start(cluster_scenario()) else {
        return;
    };
    let mut s = token_settings(&pve);
    s.fingerprint = Some(["AB"; 32].join(":"));
    // The CA file would trust the server: a pin must still win.
    let err = PveClient::new(s).unwrap().nodes().unwrap_err();
    let PveError::Tls { fingerprint, pinned, .. } = &err else {
        panic!("expected a TLS error, got {err}")
    };
    assert!(pinned);
    assert_eq!(fingerprint.as_deref(), Some(pve.fingerprint()));
    assert!(err.to_string().contains("does not match PROXMOX_TLS_FINGERPRINT"), "{err}");
    assert!(pve.requests().is_empty());
}

#[test]
fn disabled_verification_connects_to_an_untrusted_server() {
    let Some(pve) = FakePve::start(cluster_scenario()) else {
        return;
    };
    let mut s = token_settings(&pve);
    s.ca_file = None;
    s.verify_tls = false;
    let logs = capture_traces(|| {
        PveClient::new(s).unwrap().nodes().unwrap();
    });
    assert_eq!(logs.matches("TLS verification of the Proxmox API is disabled").count(), 1, "{logs}");
}

#[test]
fn put_value_with_semicolon_and_ampersand_arrives_intact() {
    let Some((pve, client)) = token_lab() else {
        return;
    };
    client.put("/nodes/pve1/qemu/104/config", &[("description".into(), "a;b&c".into())]).unwrap();
    let put = pve.requests().into_iter().find(|r| r.method == "PUT").unwrap();
    assert_eq!(put.api_path(), "/nodes/pve1/qemu/104/config");
    assert_eq!(put.body, "description=a%3Bb%26c");
    assert_eq!(pve.vm(104)["config"]["description"], "a;b&c");
}

#[test]
fn parameter_errors_carry_the_field_names() {
    let Some((_pve, client)) = token_lab() else {
        return;
    };
    let err = client.put("/nodes/pve1/qemu/104/config", &[("cores".into(), "many".into())]).unwrap_err();
    let PveError::Api { status, field_errors, .. } = &err else {
        panic!("expected an API error, got {err}")
    };
    assert_eq!(*status, 400);
    assert!(field_errors.contains_key("cores"), "{err}");
    assert!(err.to_string().contains("`cores`"), "{err}");
}

#[test]
fn config_status_and_agent_addresses_are_read() {
    let Some((_pve, client)) = token_lab() else {
        return;
    };
    let config = client.vm_config("pve1", 101).unwrap();
    assert_eq!(config["ipconfig0"], "ip=10.10.0.50/24,gw=10.10.0.1");
    assert!(config["digest"].as_str().is_some_and(|d| d.len() == 40));
    let status = client.vm_status("pve2", 105).unwrap();
    assert_eq!((status.status.as_str(), status.lock.as_deref()), ("running", Some("backup")));
    let ips = client.agent_ips("pve2", 102).unwrap();
    let shown: Vec<String> = ips.iter().map(|i| format!("{} {}/{:?}", i.interface, i.ip, i.prefix)).collect();
    assert_eq!(shown, ["eth0 10.10.0.201/Some(24)"]);
}

#[test]
fn agent_not_running_is_its_own_error() {
    let Some((pve, client)) = token_lab() else {
        return;
    };
    let err = client.agent_ips("pve1", 101).unwrap_err();
    assert_eq!(err.kind(), "agent_not_running", "{err}");
    assert!(matches!(err, PveError::AgentNotRunning { vmid: 101, .. }));
    assert_eq!(api_calls(&pve).len(), 1, "a 500 is not retried");
}

#[test]
fn offline_node_is_reported_and_its_paths_are_unreachable_after_bounded_retries() {
    let Some((pve, client)) = token_lab() else {
        return;
    };
    let err = client.vm_status("pve3", 301).unwrap_err();
    let PveError::NodeUnreachable { node, status, .. } = &err else {
        panic!("expected unreachable, got {err}")
    };
    assert_eq!((node.as_deref(), *status), (Some("pve3"), 595));
    assert_eq!(err.kind(), "unreachable");
    assert_eq!(api_calls(&pve).len(), 3, "one try and two retries");
}

#[test]
fn node_going_offline_mid_run_shows_in_the_next_discovery() {
    let Some((pve, client)) = token_lab() else {
        return;
    };
    assert_eq!(client.cluster().unwrap().offline_nodes(), ["pve3"]);
    pve.set_node_offline("pve2", true);
    let cluster = client.cluster().unwrap();
    assert_eq!(cluster.offline_nodes(), ["pve2", "pve3"]);
    assert!(cluster.vms.iter().filter(|v| v.node == "pve2").all(|v| v.status == "unknown"));
}

#[test]
fn transient_get_failure_is_retried() {
    let Some(pve) = FakePve::start(cluster_scenario()) else {
        return;
    };
    pve.fail("GET", "/cluster/resources", 503, "service busy", Some(1));
    let client = PveClient::new(token_settings(&pve)).unwrap();
    assert_eq!(client.cluster().unwrap().vms.len(), 7);
    assert_eq!(api_calls(&pve), ["GET /cluster/resources", "GET /cluster/resources"]);
}

#[test]
fn dropped_connections_on_a_get_are_retried() {
    // fakepve seeds its randomness at start: this drop sequence is the same on every run.
    let mut scenario = cluster_scenario();
    scenario["flaky"] = json!({"drop_rate": 0.3, "seed": 1});
    let Some(pve) = FakePve::start(scenario) else {
        return;
    };
    let client = PveClient::new(token_settings(&pve)).unwrap();
    for _ in 0..10 {
        client.nodes().unwrap();
    }
    // Dropped requests never reach fakepve's log; the client counted them.
    assert_eq!(pve.requests().len(), 10);
    assert!(client.requests_sent() > 10, "some requests were dropped and sent again");
}

#[test]
fn failed_write_is_never_retried() {
    let Some(pve) = FakePve::start(cluster_scenario()) else {
        return;
    };
    pve.fail("PUT", "/nodes/pve1/qemu/104/config", 503, "service busy", Some(1));
    let client = PveClient::new(token_settings(&pve)).unwrap();
    let err = client.put("/nodes/pve1/qemu/104/config", &[("description".into(), "x".into())]).unwrap_err();
    assert!(matches!(err, PveError::Api { status: 503, .. }), "{err}");
    assert!(err.to_string().contains("service busy"), "{err}");
    assert_eq!(api_calls(&pve), ["PUT /nodes/pve1/qemu/104/config"]);
}

#[test]
fn slow_answer_is_a_timeout_naming_host_and_path() {
    let Some(pve) = FakePve::start(json!({"time_scale": 1, "latency": 3, "tokens": {TOKEN_ID: TOKEN_SECRET}})) else {
        return;
    };
    let mut s = token_settings(&pve);
    s.timeout = Duration::from_millis(500);
    s.retries = 0;
    let err = PveClient::new(s).unwrap().nodes().unwrap_err();
    assert_eq!(err.kind(), "timeout", "{err}");
    assert!(err.to_string().contains(pve.host()) && err.to_string().contains("/nodes"), "{err}");
}

#[test]
fn nothing_listening_is_a_connect_error() {
    let Some(pve) = FakePve::start(json!({})) else {
        return;
    };
    let port = std::net::TcpListener::bind((pve.host(), 0)).unwrap().local_addr().unwrap().port();
    let mut s = password_settings(&pve, PASSWORD);
    s.port = port; // bound and released: nobody listens there now
    s.retries = 1;
    let err = PveClient::new(s).unwrap().nodes().unwrap_err();
    assert_eq!(err.kind(), "connect", "{err}");
}

#[test]
fn transient_595_on_a_get_is_retried() {
    let Some(pve) = FakePve::start(cluster_scenario()) else {
        return;
    };
    pve.fail_named("GET", "/nodes/pve1/qemu/101/config", "no_route_to_host", Some(1));
    let client = PveClient::new(token_settings(&pve)).unwrap();
    assert!(client.vm_config("pve1", 101).unwrap().contains_key("digest"));
    assert_eq!(api_calls(&pve).len(), 2);
}

#[test]
fn pve_named_error_on_a_write_is_reported_with_its_message() {
    let Some(pve) = FakePve::start(cluster_scenario()) else {
        return;
    };
    let path = "/nodes/pve1/qemu/104/config";
    pve.fail_named("PUT", path, "checksum_mismatch_file_change_other", None);
    let client = PveClient::new(token_settings(&pve)).unwrap();
    let err = client.put(path, &[("description".into(), "x".into())]).unwrap_err();
    assert!(matches!(err, PveError::Api { status: 500, .. }), "{err}");
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
    assert!(err.to_string().contains(path), "{err}");
}

#[test]
fn ca_file_still_checks_the_host_name_but_a_pin_does_not() {
    let mut scenario = cluster_scenario();
    scenario["cert_names"] = json!(["pve1.example.invalid"]);
    let Some(pve) = FakePve::start(scenario) else {
        return;
    };
    let err = PveClient::new(token_settings(&pve)).unwrap().nodes().unwrap_err();
    assert_eq!(err.kind(), "tls", "{err}");
    assert!(err.to_string().contains(pve.fingerprint()), "{err}");
    let mut pinned = token_settings(&pve);
    pinned.ca_file = None;
    pinned.fingerprint = Some(pve.fingerprint().into());
    PveClient::new(pinned).unwrap().nodes().unwrap();
}

#[test]
fn query_parameters_are_sent_encoded() {
    let Some((pve, client)) = token_lab() else {
        return;
    };
    let data = client.get("/cluster/resources", &[("type", "vm")]).unwrap();
    assert!(data.as_array().unwrap().iter().all(|r| r["type"] != "node"));
    let logged = pve.requests();
    assert_eq!(logged[0].query, "type=vm");
}
