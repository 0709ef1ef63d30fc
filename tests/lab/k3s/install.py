#!/usr/bin/python3
"""The body of the lab's stand-in install script (install.sh execs this as root).

Follows k3s-io/k3s install.sh step by step (see README.md): role from the first argument
or K3S_URL, the binary "downloaded" from the lab's releases (or left alone with
INSTALL_K3S_SKIP_DOWNLOAD=true), symlinks, killall and uninstall scripts, the env file
(0600, every K3S_* variable), the unit, enable + daemon-reload, and a restart that blocks
until the service is up, unless binary + unit + env hash as before ("No change detected").
Every run is logged to the lab's event log (events "install-start" and "install"), the
token only as a digest.
"""

import os
import shlex
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import labcommon as L  # noqa: E402

BIN_DIR = os.environ.get("INSTALL_K3S_BIN_DIR", "/usr/local/bin")
SYSTEMD_DIR = os.environ.get("INSTALL_K3S_SYSTEMD_DIR", "/etc/systemd/system")
BIN = os.path.join(BIN_DIR, "k3s")
GITHUB = "https://github.com/k3s-io/k3s/releases/download"

RECORD = {}


def info(msg):
    sys.stdout.write("[INFO]  %s\n" % msg)
    sys.stdout.flush()


def warn(msg):
    sys.stdout.write("[WARN]  %s\n" % msg)
    sys.stdout.flush()


def fatal(msg, outcome="failed"):
    sys.stderr.write("[ERROR]  %s\n" % msg)
    sys.stderr.flush()
    finish(outcome, msg)
    sys.exit(1)


def finish(outcome, message=""):
    RECORD.update(outcome=outcome, message=message, finished=round(time.time(), 4))
    RECORD["duration"] = round(RECORD["finished"] - RECORD["started"], 4)
    L.event("install", **RECORD)


def secrets_in_env():
    out = []
    for k in ("K3S_TOKEN", "K3S_AGENT_TOKEN", "K3S_CLUSTER_SECRET"):
        if os.environ.get(k):
            out.append(os.environ[k])
    for k in ("K3S_TOKEN_FILE", "K3S_AGENT_TOKEN_FILE"):
        try:
            v = open(os.environ[k]).read().strip() if os.environ.get(k) else ""
        except OSError:
            v = ""
        if v:
            out.append(v)
    return out


def masked(args, secret_values):
    """Arguments as logged: values of --token/--agent-token and any known token replaced."""
    out, hide = [], False
    for a in args:
        if hide:
            out.append("<%s>" % L.token_digest(a))
            hide = False
            continue
        name, eq, val = a.partition("=")
        if name in ("--token", "-t", "--agent-token", "--vpn-auth"):
            if eq:
                out.append("%s=<%s>" % (name, L.token_digest(val)))
            else:
                out.append(a)
                hide = True
            continue
        for s in secret_values:
            if s and s in a:
                a = a.replace(s, "<%s>" % L.token_digest(s))
        out.append(a)
    return out


def hashes(files):
    out = []
    for f in files:
        try:
            out.append("%s  %s" % (L.sha256_file(f), f))
        except OSError:
            out.append("sha256sum: %s: No such file or directory" % f)
    return "\n".join(out)


def sh_quote(v):
    return "'" + v.replace("'", "'\\''") + "'"


def unit_text(name, cmd, args, env_file):
    lines = "".join("\t%s \\\n" % sh_quote(a) for a in args)
    return (
        "[Unit]\nDescription=Lightweight Kubernetes\nDocumentation=https://k3s.io\n"
        "Wants=network-online.target\nAfter=network-online.target\n\n[Install]\nWantedBy=multi-user.target\n\n"
        "[Service]\nType=notify\nEnvironmentFile=-/etc/default/%%N\nEnvironmentFile=-/etc/sysconfig/%%N\n"
        "EnvironmentFile=-%s\nKillMode=process\nDelegate=yes\nUser=root\n"
        "LimitNOFILE=1048576\nLimitNPROC=infinity\nLimitCORE=infinity\nTasksMax=infinity\nTimeoutStartSec=0\n"
        "Restart=always\nRestartSec=5s\nExecStartPre=-/sbin/modprobe br_netfilter\nExecStartPre=-/sbin/modprobe overlay\n"
        "ExecStart=%s \\\n    %s \\\n%s\n" % (env_file, BIN, cmd, lines)
    )


KILLALL = """#!/bin/sh
# k3sx lab stand-in for k3s-killall.sh: stops the k3s services and any k3s process left.
[ $(id -u) -eq 0 ] || exec sudo $0 "$@"
for service in /etc/systemd/system/k3s*.service; do
    [ -s $service ] && systemctl stop $(basename $service)
done
for p in /proc/[0-9]*; do
    cmd=$(tr '\\0' ' ' < $p/cmdline 2>/dev/null) || continue
    case "$cmd" in
        *"/usr/local/bin/k3s server"*|*"/usr/local/bin/k3s agent"*) kill -9 ${p#/proc/} 2>/dev/null ;;
    esac
done
rm -rf /run/k3s
/usr/bin/python3 /run/k3sx-lab/lab/bin/labevent.py killall
exit 0
"""

UNINSTALL = """#!/bin/sh
# k3sx lab stand-in for %(script)s: what the real one removes, nothing more. The kube-vip
# VIP stays on the NIC, the Node and its etcd member stay in the cluster (as with K3s).
set -x
[ $(id -u) -eq 0 ] || exec sudo $0 $@

/usr/local/bin/k3s-killall.sh

if command -v systemctl; then
    systemctl disable %(name)s
    systemctl reset-failed %(name)s
    systemctl daemon-reload
fi

rm -f /etc/systemd/system/%(name)s.service
rm -f /etc/systemd/system/%(name)s.service.env

remove_uninstall() {
    rm -f /usr/local/bin/%(script)s
}
trap remove_uninstall EXIT

/usr/bin/python3 /run/k3sx-lab/lab/bin/labevent.py uninstall role=%(role)s

if (ls /etc/systemd/system/k3s*.service || ls /etc/init.d/k3s*) >/dev/null 2>&1; then
    set +x; echo 'Additional k3s services installed, skipping uninstall of k3s'; set -x
    exit
fi

for cmd in kubectl crictl ctr; do
    if [ -L /usr/local/bin/$cmd ]; then
        rm -f /usr/local/bin/$cmd
    fi
done

rm -rf /etc/rancher/k3s
rm -rf /run/k3s
rm -rf /run/flannel
rm -rf /var/lib/rancher/k3s
rm -rf /var/lib/kubelet/*
rm -f /usr/local/bin/k3s
rm -f /usr/local/bin/k3s-killall.sh
"""


def main(argv):
    env = os.environ
    h = L.host()
    exec_args = shlex.split(env.get("INSTALL_K3S_EXEC", ""))
    args = exec_args + list(argv)
    url = env.get("K3S_URL", "")
    if args and not args[0].startswith("-"):
        cmd, args = args[0], args[1:]
    else:
        cmd = "agent" if url else "server"
    secret_values = secrets_in_env()
    token = env.get("K3S_TOKEN")
    RECORD.update(
        started=round(time.time(), 4),
        role=cmd,
        version=env.get("INSTALL_K3S_VERSION") or None,
        mode="airgap" if env.get("INSTALL_K3S_SKIP_DOWNLOAD") == "true" else "online",
        args=masked(args, secret_values),
        env=sorted(k for k in env if k.startswith("K3S_")),
        token=L.token_digest(token) if token else None,
        token_file=env.get("K3S_TOKEN_FILE") or None,
        cmdline_args=len(argv),
    )
    L.event("install-start", **{k: RECORD[k] for k in ("role", "version", "mode", "args")})
    if os.geteuid() != 0:
        fatal("the k3sx lab's install script must run as root")
    if cmd not in ("server", "agent"):
        fatal("the k3sx lab stand-in installs `server` or `agent`, not %r" % cmd)
    if url:
        if not url.startswith("https://"):
            fatal("Only https:// URLs are supported for K3S_URL (have %s)" % url)
        if not url.rstrip("/").endswith(":6443"):
            fatal("k3sx lab: K3S_URL must be https://HOST:6443, the port the stand-in serves (have %s)" % url)
        if cmd == "agent" and not (token or env.get("K3S_TOKEN_FILE")):
            fatal("Defaulted k3s exec command to 'agent' because K3S_URL is defined, but K3S_TOKEN or K3S_TOKEN_FILE is not defined.")
    f = L.fault("install_fails")
    if f:
        fatal(f)
    name = "k3s" if cmd == "server" else "k3s-" + cmd
    unit = os.path.join(SYSTEMD_DIR, name + ".service")
    env_file = unit + ".env"
    if not shutil.which("systemctl") and not os.access("/bin/systemctl", os.X_OK):
        fatal("Can not find systemd or openrc to use as a process supervisor for k3s")
    pre = hashes([BIN, unit, env_file])

    # --- download and verify (or air-gap: the binary must be there already) ---
    if env.get("INSTALL_K3S_SKIP_DOWNLOAD") == "true":
        info("Skipping k3s download and verify")
        if not (os.path.isfile(BIN) and os.access(BIN, os.X_OK)):
            fatal("Executable k3s binary not found at %s" % BIN)
        try:
            out = subprocess.run([BIN, "--version"], capture_output=True, text=True, timeout=30).stdout
            RECORD["version"] = out.split()[2] if out.startswith("k3s version") else RECORD["version"]
        except (OSError, subprocess.TimeoutExpired, IndexError):
            pass
    else:
        version = env.get("INSTALL_K3S_VERSION")
        if not version:
            fatal("k3sx lab: INSTALL_K3S_VERSION is required (the lab has no channel server to resolve %s)" % env.get("INSTALL_K3S_CHANNEL", "stable"))
        info("Using %s as release" % version)
        info("Downloading hash %s/%s/sha256sum-amd64.txt" % (GITHUB, version))
        src = os.path.join(L.LAB, "releases", version, "k3s")
        if not os.path.exists(src):
            fatal("Download failed")
        if os.path.exists(BIN) and L.sha256_file(BIN) == L.sha256_file(src):
            info("Skipping binary downloaded, installed k3s matches hash")
        else:
            info("Downloading binary %s/%s/k3s" % (GITHUB, version))
            time.sleep(L.delay("install"))
            info("Verifying binary download")
            info("Installing k3s to %s" % BIN)
            tmp = BIN + ".k3sx-lab-tmp"
            shutil.copyfile(src, tmp)
            os.chmod(tmp, 0o755)
            os.replace(tmp, BIN)

    # --- symlinks, killall, uninstall ---
    if env.get("INSTALL_K3S_SYMLINK") != "skip":
        for c in ("kubectl", "crictl", "ctr"):
            link = os.path.join(BIN_DIR, c)
            if not os.path.lexists(link) or env.get("INSTALL_K3S_SYMLINK") == "force":
                info("Creating %s symlink to k3s" % link)
                if os.path.lexists(link):
                    os.remove(link)
                os.symlink("k3s", link)
            else:
                info("Skipping %s symlink to k3s, already exists" % link)
    killall = os.path.join(BIN_DIR, "k3s-killall.sh")
    info("Creating killall script %s" % killall)
    L.atomic_write(killall, KILLALL, 0o755)
    script = "k3s-uninstall.sh" if cmd == "server" else "k3s-%s-uninstall.sh" % cmd
    info("Creating uninstall script %s" % os.path.join(BIN_DIR, script))
    L.atomic_write(os.path.join(BIN_DIR, script), UNINSTALL % {"name": name, "script": script, "role": cmd}, 0o755)

    # --- systemd_disable, env file, unit ---
    subprocess.run(["systemctl", "disable", name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for p in (unit, env_file):
        if os.path.exists(p):
            os.remove(p)
    info("env: Creating environment file %s" % env_file)
    keep = sorted(k for k in env if k.startswith(("K3S_", "CONTAINERD_")) or k.upper() in ("NO_PROXY", "HTTP_PROXY", "HTTPS_PROXY"))
    os.makedirs(SYSTEMD_DIR, exist_ok=True)
    L.atomic_write(env_file, "".join("%s=%s\n" % (k, sh_quote(env[k])) for k in keep), 0o600)
    info("systemd: Creating service file %s" % unit)
    L.atomic_write(unit, unit_text(name, cmd, args, env_file), 0o644)

    if env.get("INSTALL_K3S_SKIP_ENABLE") == "true":
        finish("skip-enable")
        return 0
    info("systemd: Enabling %s unit" % name)
    subprocess.run(["systemctl", "enable", unit], stdout=subprocess.DEVNULL)
    subprocess.run(["systemctl", "daemon-reload"], stdout=subprocess.DEVNULL)
    if env.get("INSTALL_K3S_SKIP_START") == "true":
        finish("skip-start")
        return 0
    post = hashes([BIN, unit, env_file])
    if pre == post and env.get("INSTALL_K3S_FORCE_RESTART") != "true":
        info("No change detected so skipping service start")
        finish("no-change")
        return 0
    info("systemd: Starting %s" % name)
    rc = subprocess.run(["systemctl", "restart", name]).returncode
    if rc != 0:
        finish("failed", "systemctl restart %s exited %d" % (name, rc))
        return rc
    finish("started")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
