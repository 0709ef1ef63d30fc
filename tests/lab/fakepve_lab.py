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
              "shutdown_secs": 0, "start_secs": 0, "stop_secs": 0, "start_error": null, "acpi": true,
              "config_lock": false, "task_log": {"qmstart": ["kvm: ..."]}, "backup_secs": null,
              "config_race": {"set": {"description": "edited elsewhere"}, "times": 1}}],
     "cts": [{"vmid": 200, "name": "ct", "node": "pve1", "status": "running", "tags": "k3s-server"}],
     "faults": [{"method": "GET", "path": "/cluster/resources", "status": 503, "message": "busy", "times": 1}],
     "flaky": {"drop_rate": 0.5, "hang_rate": 0, "hang_secs": 120, "seed": 1},
     "lock_wait": 10, "shutdown_default_timeout": 60, "reboot_restart_secs": 1}

cert_names: the names and addresses the server certificate is issued for (default: localhost and host).

Faults per VM (on top of fakepve's own "lock", "start_error", "shutdown_secs", ... and the offline "nodes"):
  lock               the VM's lock (backup, snapshot, ...): start fails in its task, stop/shutdown/reboot and
                     config writes answer 500 `VM is locked (backup)`
  backup_secs        a vzdump task holds lock `backup` for that many PVE seconds from the start
  config_lock        another task holds the VM's config lock: true (until `release_config_lock`) or PVE seconds;
                     writes wait lock_wait PVE seconds, then 500 `can't lock file ... got timeout` (tasks: the same as
                     their exit status). At time_scale 0 they fail at once.
  task_log           {task type: [lines]}: lines every task of that type logs before its outcome (e.g. what QEMU
                     printed before a start_error)
  config_race        after the next `times` config reads, the config changes as if another user wrote `set`
                     (a key with null is deleted): a write with the digest just read gets a digest mismatch
Unlike plain fakepve, GET .../config shows pending values applied (as PVE does unless `current=1`), and
PUT .../cloudinit regenerates a modelled cloud-init drive (as do start and reboot): GET .../cloudinit shows
what the drive holds and what is pending, and the `vm` command returns `cloudinit` and `cloudinit_regenerated`.

A reboot works as on PVE: its qmreboot task ends once the guest is down, and a separate qmstart task brings
the VM back reboot_restart_secs (default 1) PVE seconds later: wait for `running`, not for the reboot task.
lock_wait: PVE seconds a write waits for a held config lock; shutdown_default_timeout: the shutdown task's
timeout when the request gives none (PVE seconds).
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
import time

from fakepve import FakePve
from fakepve.model import PveError, TaskError
from fakepve.server import GENERIC, USER, ok, params

# The protocol owns stdout; anything else printed goes to stderr.
PROTOCOL = sys.stdout
sys.stdout = sys.stderr

VM_ATTRS = ('shutdown_secs', 'start_secs', 'stop_secs', 'start_error', 'acpi', 'ha_state', 'agent',
            'agent_hangs', 'qmpstatus', 'stats', 'status', 'task_log', 'config_race')


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


CLOUDINIT_KEYS = ('ciuser', 'cipassword', 'citype', 'ciupgrade', 'cicustom', 'nameserver', 'searchdomain',
                  'sshkeys') + tuple('ipconfig{0}'.format(n) for n in range(32))
CLOUDINIT_PATH = '/nodes/{node}/qemu/{vmid}/cloudinit'


def effective_config(vm):
    """The config with pending changes applied: what GET .../config shows by default."""
    cfg = dict(vm.config)
    for key, val in vm.pending.items():
        if val is None:
            cfg.pop(key, None)
        else:
            cfg[key] = val
    return cfg


def regenerate_cloudinit(vm):
    """Write the cloud-init drive from the VM's config (pending values included)."""
    cfg = effective_config(vm)
    vm.cloudinit = dict((k, str(cfg[k])) for k in CLOUDINIT_KEYS if k in cfg)
    vm.cloudinit_regenerated = getattr(vm, 'cloudinit_regenerated', 0) + 1


class LabPve(FakePve):
    """fakepve with the lab's extras: the query string in the request log, task log lines, config races,
    pending values in config reads, and a modelled cloud-init drive."""

    def _record(self, request, body):
        super()._record(request, body)
        self.requests[-1] = self.requests[-1] + (request.query_string,)

    async def task(self, node, ttype, tid, user, body, vm=None, lock=True, log=()):
        extra = list((getattr(vm, 'task_log', None) or {}).get(ttype, [])) if vm is not None else []
        run = body
        if vm is not None and ttype == 'qmstart':
            async def run():
                note = await body()
                if vm.status == 'running':
                    regenerate_cloudinit(vm)  # PVE rebuilds the drive when the VM starts
                return note
        return await super().task(node, ttype, tid, user, run, vm=vm, lock=lock, log=list(log) + extra)

    async def _do_reboot(self, vm, user, p):
        """As on PVE: the qmreboot task ends once the guest is down; qmeventd then starts the VM again with a
        separate qmstart task (reboot_restart_secs later), which applies pending changes."""
        self._need_running(vm)
        self._check_lock(vm)

        async def body():
            await self._powerdown(vm, p)

            async def start():
                await self.ceph_io(vm)
                await self.pause(vm.start_secs)
                vm.apply_pending()
                vm.status = vm.qmpstatus = 'running'
                vm.started_at = time.time()

            async def back_up():
                await self.pause(self.reboot_restart_secs)
                # The reboot task still holds the config lock when time does not run; the restart does not wait.
                await self.task(vm.node, 'qmstart', vm.vmid, 'root@pam', start, vm=vm, lock=bool(self.time_scale))
            if self.time_scale:
                asyncio.ensure_future(back_up())
            else:
                await back_up()
        return await self.task(vm.node, 'qmreboot', vm.vmid, user, body, vm=vm)

    async def _config_get(self, request):
        vm = self._vm(request, 'VM.Audit')
        p = await params(request)
        cfg = dict(vm.config) if str(p.get('current', '0')) in ('1', 'true') else effective_config(vm)
        if 'memory' in cfg:
            cfg['memory'] = str(cfg['memory'])  # PVE sends it as a string
        cfg['digest'] = vm.digest()
        race = getattr(vm, 'config_race', None)
        if race and race.get('times', 1) > 0:
            race['times'] = race.get('times', 1) - 1
            change_config(vm, race.get('set') or {'description': 'changed by another user'})
        return ok(cfg)

    async def _generic(self, request):
        match = request[GENERIC]
        if match is not None and match.template == CLOUDINIT_PATH and request.method in ('GET', 'PUT'):
            method = request.method

            async def call(_match, values):
                return await self._cloudinit(method, values)
            return ok(await self.answer(request, match, await params(request), request[USER], call))
        return await super()._generic(request)

    async def _cloudinit(self, method, values):
        """GET: what the drive holds and what is pending; PUT: regenerate the drive (PVE >= 8.1)."""
        vm = self.find(values['node'], values['vmid'])
        drive = getattr(vm, 'cloudinit', None) or {}
        if method == 'GET':
            cfg = effective_config(vm)
            out = []
            for key in sorted(set(drive) | set(k for k in CLOUDINIT_KEYS if k in cfg)):
                item = {'key': key}
                if key in drive:
                    item['value'] = drive[key]
                if key in cfg and str(cfg[key]) != drive.get(key):
                    item['pending'] = str(cfg[key])
                elif key not in cfg:
                    item['delete'] = 1
                out.append(item)
            return out
        self.need_quorum()
        self._check_lock(vm)
        try:
            await self.acquire(vm, 'cloudinit')
        except TaskError as e:
            raise PveError(500, str(e)) from e
        try:
            regenerate_cloudinit(vm)
        finally:
            self.release(vm, 'cloudinit')
        return None


def build(scenario):
    """The FakePve the scenario describes (not started)."""
    pve = LabPve(user=scenario.get('user', 'root@pam'), password=scenario.get('password', 'secret'),
                  host=scenario['host'], port=scenario.get('port', 0))
    pve.time_scale = float(scenario.get('time_scale', 0))
    pve.users.update(scenario.get('users', {}))
    pve.apitokens.update(scenario.get('tokens', {}))
    if 'ticket_ttl' in scenario:
        pve.ticket_ttl = scenario['ticket_ttl']
    pve.reboot_restart_secs = float(scenario.get('reboot_restart_secs', 1))
    for key in ('lock_wait', 'shutdown_default_timeout'):
        if key in scenario:
            setattr(pve, key, scenario[key])
    # Faults that need the event loop: (what, vmid, secs), started once fakepve runs.
    pve.startup = []
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
        regenerate_cloudinit(vm)  # the drive as the last start left it
        vm.cloudinit_regenerated = 0
        if spec.get('config_lock'):
            secs = spec['config_lock']
            pve.startup.append(('config_lock', vm.vmid, None if secs is True else float(secs)))
        if spec.get('backup_secs') is not None:
            pve.startup.append(('backup', vm.vmid, float(spec['backup_secs'])))
    for spec in scenario.get('cts', []):
        config = dict(spec.get('config', {}))
        if spec.get('tags') is not None:
            config['tags'] = spec['tags']
        pve.add_ct(spec['vmid'], spec.get('name'), node=spec.get('node', 'pve1'),
                   status=spec.get('status', 'stopped'), config=config, template=spec.get('template', False),
                   lock=spec.get('lock'))
    for node in offline:
        pve.set_node_offline(node)
    # [[user_or_token, path, [privileges...]], ...]: once any is given, only grants count
    # (root@pam keeps every privilege, as on PVE).
    for user, path, privs in scenario.get('grants', []):
        pve.grant(user, path, *privs)
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
            'config': vm.config, 'pending': vm.pending, 'agent_requests': vm.agent_requests,
            'config_lock_holder': vm.lock_holder, 'cloudinit': getattr(vm, 'cloudinit', {}),
            'cloudinit_regenerated': getattr(vm, 'cloudinit_regenerated', 0)}


def change_config(vm, changes):
    """Another user's write: keys set, or deleted when None (the digest changes)."""
    for key, val in changes.items():
        if val is None:
            vm.config.pop(key, None)
        else:
            vm.config[key] = val


async def run_startup(pve):
    for what, vmid, secs in pve.startup:
        if what == 'config_lock':
            await pve.hold_config_lock(vmid, secs)
        elif what == 'backup':
            await pve.backup(vmid, secs)


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
    if name == 'change_config':
        change_config(pve.vm(cmd['vmid']), cmd['set'])
        return None
    if name == 'config_race':
        pve.vm(cmd['vmid']).config_race = {'set': cmd.get('set'), 'times': cmd.get('times', 1)}
        return None
    if name == 'backup':
        return await pve.backup(cmd['vmid'], cmd.get('secs', 30))
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
    await run_startup(pve)
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
