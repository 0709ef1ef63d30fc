//! The lab options the demo (`examples/demo_lab.rs`, `tests/lab/demo`) builds on, without
//! running the demo: hosts, SSH port, HTTP server and VIP at addresses the caller fixes, and a
//! clear failure when another lab holds one of them. (The demo's own fixed addresses are not used
//! here, so the tests and a running demo never meet.)

#[path = "lab/mod.rs"]
mod lab;

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::sync::Mutex;
use std::time::Duration;

use lab::k3s_lab::{K3sLab, K3sOptions};
use lab::sshd::{self, LabOptions, SshLab};

/// The tests here probe for free addresses, then claim them: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// `n` consecutive 127.0.1.x addresses near the top, free right now (no lab holds their lock),
/// and a port free on all of them. The tests' own labs count up from 127.0.1.2.
fn free_block(n: u8) -> (Vec<Ipv4Addr>, u16) {
    'start: for first in (200u8..=251 - n).rev() {
        let addrs: Vec<Ipv4Addr> = (0..n).map(|i| Ipv4Addr::new(127, 0, 1, first + i)).collect();
        for a in &addrs {
            if sshd::lock_address(&format!("host-{a}")).is_none() {
                continue 'start;
            }
        }
        let port = TcpListener::bind((addrs[0], 0)).unwrap().local_addr().unwrap().port();
        if addrs.iter().all(|a| TcpListener::bind((*a, port)).is_ok()) {
            return (addrs, port);
        }
    }
    panic!("no free block of {n} lab addresses in 127.0.1.200-251");
}

fn free_vip() -> Ipv4Addr {
    (200u8..=251)
        .rev()
        .map(|x| Ipv4Addr::new(127, 0, 2, x))
        .find(|v| sshd::lock_address(&format!("vip-{v}")).is_some())
        .expect("a free VIP in 127.0.2.200-251")
}

#[test]
fn a_k3s_lab_at_fixed_addresses_listens_where_it_was_told() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (addrs, port) = free_block(2);
    let http = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let vip = free_vip();
    let opts = K3sOptions {
        hostnames: vec!["k3s-server-1".into(), "k3s-agent-1".into()],
        addresses: addrs.clone(),
        ssh_port: Some(port),
        http_addr: Some(SocketAddrV4::new(Ipv4Addr::LOCALHOST, http)),
        vip: Some(vip),
        ..K3sOptions::default()
    };
    let Some(lab) = K3sLab::start(2, opts) else { return };
    assert_eq!((lab.addr(0), lab.addr(1), lab.port()), (addrs[0], addrs[1], port));
    assert_eq!(lab.host(0).name, "k3s-server-1");
    for a in &addrs {
        TcpStream::connect_timeout(&(*a, port).into(), Duration::from_secs(2)).expect("sshd on the fixed address");
    }
    assert_eq!(lab.install_url(), format!("http://127.0.0.1:{http}/install.sh"));
    assert_eq!(lab.vip(), vip);
    assert_eq!(lab.vips_claimed(2)[0], vip, "the fixed VIP stays the first");

    // Another lab cannot take an address this one holds: it fails naming it, before sshd starts.
    let again = std::panic::catch_unwind(|| {
        SshLab::start_with(1, LabOptions { addresses: vec![addrs[0]], ..LabOptions::default() })
    });
    let message = again.err().and_then(|e| e.downcast::<String>().ok()).expect("the second lab fails");
    assert!(message.contains(&format!("{} is held by another k3sx lab", addrs[0])), "{message}");
}

#[test]
fn a_fixed_ssh_port_that_is_taken_is_named() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (addrs, port) = free_block(1);
    let _taken = TcpListener::bind((addrs[0], port)).unwrap();
    let started = std::panic::catch_unwind(|| {
        SshLab::start_with(1, LabOptions { addresses: addrs.clone(), port: Some(port), ..LabOptions::default() })
    });
    if let Ok(None) = started {
        return; // the machine cannot run the lab (K3SX_SKIP_LAB=1): counted as skipped
    }
    let message = started.err().and_then(|e| e.downcast::<String>().ok()).expect("a taken port fails the start");
    assert!(message.contains(&format!("{}:{port} cannot be used", addrs[0])), "{message}");
}
