"""Serve a fakepve scenario for k3sx's tests, and take commands while it runs.

    python fakepve_lab.py SCENARIO.json

SCENARIO.json (every key optional except dir and host):
    {"dir": "/tmp/x", "host": "127.0.3.7", "port": 0,
     "user": "root@pam", "password": "secret", "users": {"alice@pve": "pw"},
     "tokens": {"root@pam!k3sx": "token-secret"},
     "time_scale": 0, "latency": 0, "jitter": 0, "node_latency": {"pve2": 0.5},
     "ticket_ttl": 7200, "quorate": true, "cert_names": ["localhost", "127.0.3.7"],
     "nodes": [{"name": "pve1", "online": true}, "pve2"],
     "vms": [{"vmid": 101, "name": "k3s-1", "node": "pve1", "status": "running", "tags": "k3s-server;prod",
              "template": false, "lock": null, "config": {"ipconfig0": "ip=10.0.0.5/24"},
              "agent": {} | {"interfaces": [...]} | null, "agent_hangs": false,
              "shutdown_secs": 0, "start_secs": 0, "stop_secs": 0, "start_error": null, "acpi": true}],
     "cts": [{"vmid": 200, "name": "ct", "node": "pve1", "status": "running", "tags": "k3s-server"}],
     "faults": [{"method": "GET", "path": "/cluster/resources", "status": 503, "message": "busy", "times": 1}],
     "flaky": {"drop_rate": 0.5, "hang_rate": 0, "hang_secs": 120, "seed": 1}}

cert_names: the names and addresses the server certificate is issued for (default: localhost and host).
Latency and task durations are PVE seconds, scaled by time_scale (real seconds per PVE second);
at time_scale 0 they take no time at all, so a scenario with latency needs time_scale > 0.

It writes ca.pem (the CA that signed the server certificate), server.pem and server.key into dir,
starts fakepve on host (port 0: a free one), prints ONE JSON line on stdout
({"ready": true, "host", "port", "url", "ca_file", "fingerprint"}) and then answers one JSON line per
JSON command line read from stdin ({"cmd": "requests"} -> {"ok": true, "result": [...]}); see COMMANDS.
It exits when stdin closes, so it never outlives the test that started it.
"""

import asyncio
import datetime
import hashlib
import ipaddress
import json
import os
import sys

from fakepve import FakePve
from fakepve.server import ok

# The protocol owns stdout; anything else printed goes to stderr.
PROTOCOL = sys.stdout
sys.stdout = sys.stderr

VM_ATTRS = ('shutdown_secs', 'start_secs', 'stop_secs', 'start_error', 'acpi', 'ha_state', 'agent',
            'agent_hangs', 'qmpstatus', 'stats', 'status')


def make_pki(directory, names):
    """A CA and a server certificate it signs for names; returns ({file: path}, fingerprint of the server cert)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, 'k3sx test Proxmox Virtual Environment CA')])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    sans = []
    for name in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = {name: os.path.join(directory, name) for name in ('ca.pem', 'server.pem', 'server.key')}
    with open(paths['ca.pem'], 'wb') as out:
        out.write(ca.public_bytes(serialization.Encoding.PEM))
    with open(paths['server.pem'], 'wb') as out:
        out.write(cert.public_bytes(serialization.Encoding.PEM))
    with os.fdopen(os.open(paths['server.key'], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 'wb') as out:
        out.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                    serialization.NoEncryption()))
    digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
    fingerprint = ':'.join(digest[i:i + 2] for i in range(0, len(digest), 2))
    return paths, fingerprint


class LabPve(FakePve):
    """fakepve, with the query string kept in the request log (fakepve keeps method, path and body),
    and GET .../config answering as real PVE does: pending changes applied unless current=1."""

    def _record(self, request, body):
        super()._record(request, body)
        self.requests[-1] = self.requests[-1] + (request.query_string,)

    async def _config_get(self, request):
        answer = await super()._config_get(request)
        if request.query.get('current') in ('1', 'true'):
            return answer
        vm = self._vm(request, 'VM.Audit')
        if not vm.pending:
            return answer
        cfg = dict(vm.config)
        for key, value in vm.pending.items():
            if value is None:
                cfg.pop(key, None)
            else:
                cfg[key] = value
        if 'memory' in cfg:
            cfg['memory'] = str(cfg['memory'])
        cfg['digest'] = vm.digest()
        return ok(cfg)


def build(scenario):
    """The FakePve the scenario describes (not started)."""
    pve = LabPve(user=scenario.get('user', 'root@pam'), password=scenario.get('password', 'secret'),
                  host=scenario['host'], port=scenario.get('port', 0))
    pve.time_scale = float(scenario.get('time_scale', 0))
    pve.users.update(scenario.get('users', {}))
    pve.apitokens.update(scenario.get('tokens', {}))
    if 'ticket_ttl' in scenario:
        pve.ticket_ttl = scenario['ticket_ttl']
    if not scenario.get('quorate', True):
        pve.lose_quorum()
    latency, jitter = float(scenario.get('latency', 0)), float(scenario.get('jitter', 0))
    node_latency = scenario.get('node_latency', {})
    if (latency or jitter or node_latency) and not pve.time_scale:
        raise ValueError('latency needs time_scale > 0 (latency is in PVE seconds, scaled by time_scale)')
    pve.slow_network(latency, jitter)
    for node, secs in node_latency.items():
        pve.slow_network(secs, node=node)
    offline = []
    if 'nodes' in scenario:
        pve.nodes = {}
        for node in scenario['nodes']:
            node = {'name': node} if isinstance(node, str) else node
            pve.add_node(node['name'])
            if not node.get('online', True):
                offline.append(node['name'])
    for spec in scenario.get('vms', []):
        config = dict(spec.get('config', {}))
        if spec.get('tags') is not None:
            config['tags'] = spec['tags']
        vm = pve.add_vm(spec['vmid'], spec.get('name'), node=spec.get('node', 'pve1'),
                        status=spec.get('status', 'stopped'), config=config,
                        template=spec.get('template', False), lock=spec.get('lock'))
        if spec.get('lock'):
            vm.config['lock'] = spec['lock']
        if spec.get('name') is None:
            vm.config.pop('name', None)
        agent = spec.get('agent')
        spec = dict(spec, agent={} if agent is True else agent)
        set_vm_attrs(vm, spec)
    for spec in scenario.get('cts', []):
        config = dict(spec.get('config', {}))
        if spec.get('tags') is not None:
            config['tags'] = spec['tags']
        pve.add_ct(spec['vmid'], spec.get('name'), node=spec.get('node', 'pve1'),
                   status=spec.get('status', 'stopped'), config=config, template=spec.get('template', False),
                   lock=spec.get('lock'))
    for node in offline:
        pve.set_node_offline(node)
    for fault in scenario.get('faults', []):
        add_fault(pve, fault)
    if scenario.get('flaky'):
        pve.flaky_network(**scenario['flaky'])
    return pve


def set_vm_attrs(vm, spec):
    for key in VM_ATTRS:
        if key in spec:
            setattr(vm, key, spec[key])
    if spec.get('status') == 'running':
        vm.qmpstatus = spec.get('qmpstatus', 'running')


def add_fault(pve, fault):
    if fault.get('error'):
        pve.fail(fault['method'], fault['path'], error=fault['error'], times=fault.get('times'))
    else:
        pve.fail(fault['method'], fault['path'], fault['status'], fault['message'], html=fault.get('html', False),
                 times=fault.get('times'))


def vm_state(vm):
    return {'vmid': vm.vmid, 'name': vm.name, 'node': vm.node, 'status': vm.status, 'lock': vm.lock,
            'config': vm.config, 'pending': vm.pending, 'agent_requests': vm.agent_requests}


async def command(pve, cmd):
    """Run one command; returns its result (JSON-serialisable)."""
    name = cmd.get('cmd')
    if name == 'ping':
        return 'pong'
    if name == 'requests':
        return [{'method': r[0], 'path': r[1], 'body': r[2].decode('utf-8', 'replace'),
                 'query': r[3] if len(r) > 3 else ''} for r in pve.requests]
    if name == 'clear_requests':
        pve.requests.clear()
        return None
    if name == 'revoke_tickets':
        pve.revoke_tickets()
        return None
    if name == 'set_node_offline':
        pve.set_node_offline(cmd['node'], cmd.get('offline', True))
        return None
    if name == 'fail':
        add_fault(pve, cmd)
        return None
    if name == 'clear_faults':
        pve.failures.clear()
        return None
    if name == 'flaky_network':
        pve.flaky_network(**{k: v for k, v in cmd.items() if k != 'cmd'})
        return None
    if name == 'slow_network':
        pve.slow_network(cmd['latency'], cmd.get('jitter', 0.0), cmd.get('node'))
        return None
    if name == 'time_scale':
        pve.time_scale = float(cmd['value'])
        return None
    if name == 'set_password':
        if cmd['user'] == pve.user:
            pve.password = cmd['password']
        else:
            pve.users[cmd['user']] = cmd['password']
        return None
    if name == 'hold_config_lock':
        await pve.hold_config_lock(cmd['vmid'], cmd.get('secs'))
        return None
    if name == 'release_config_lock':
        pve.release_config_lock(cmd['vmid'])
        return None
    if name == 'lock':
        pve.snapshot_lock(cmd['vmid'], cmd.get('lock', 'snapshot'))
        return None
    if name == 'unlock':
        pve.unlock(cmd['vmid'])
        return None
    if name == 'set_vm':
        set_vm_attrs(pve.vm(cmd['vmid']), cmd)
        return None
    if name == 'vm':
        vm = pve.vm(cmd['vmid'])
        return vm_state(vm) if vm else None
    if name == 'tasks':
        return [dict((k, v) for k, v in t.items()) for t in pve.tasklog]
    raise ValueError('unknown command {0!r}'.format(name))


def reply(message):
    PROTOCOL.write(json.dumps(message, default=str) + '\n')
    PROTOCOL.flush()


async def main(path):
    with open(path) as fh:
        scenario = json.load(fh)
    pve = build(scenario)
    names = scenario.get('cert_names') or ['localhost', scenario['host']]
    files, fingerprint = make_pki(scenario['dir'], names)
    await pve.start(files['server.pem'], files['server.key'])
    reply({'ready': True, 'host': pve.host, 'port': pve.port, 'url': pve.url, 'ca_file': files['ca.pem'],
           'fingerprint': fingerprint})
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break  # the test is gone
        if not line.strip():
            continue
        try:
            reply({'ok': True, 'result': await command(pve, json.loads(line))})
        except Exception as e:  # noqa: BLE001 - every failure goes back to the test
            reply({'ok': False, 'error': '{0}: {1}'.format(type(e).__name__, e)})
    await pve.stop()


if __name__ == '__main__':
    try:
        asyncio.run(main(sys.argv[1]))
    except KeyboardInterrupt:
        pass
    except Exception as e:  # noqa: BLE001 - the harness shows this line when startup fails
        reply({'ready': False, 'error': '{0}: {1}'.format(type(e).__name__, e)})
        sys.exit(1)
