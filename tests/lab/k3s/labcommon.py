"""Shared helpers of the k3sx lab's K3s stand-in (install.py, k3s, systemctl, ip, journalctl).

Standard library only: the lab hosts run these with the machine's /usr/bin/python3.

Where things are, inside a lab host (see README.md in this directory):
  /run/k3sx-lab/state/      this host's stand-in state, on the machine <host dir>/standin/:
      host.json             who this host is: index, addr, iface, gateway, prefix, mac
      nic.json              addresses added to its NIC (kube-vip's VIP, `ip addr add`)
      units/                the systemctl shim's unit states and service logs
  /run/k3sx-lab/lab/        the lab-wide directory, shared by every host (bind mount):
      config.json           delays, releases and faults, rewritten by the test at any time
      bin/                  these scripts; releases/<version>/k3s the "downloadable" binaries
      log/events.jsonl      every install, service start/stop, join, ready, voter, uninstall...
      clusters/<id>/        the clusters' datastores (state.json, lock, hb/<node>)
Outside a host (the test process), K3SX_LAB_DIR points at the lab-wide directory.
"""

import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
import re
import socket
import time

LAB = os.environ.get("K3SX_LAB_DIR", "/run/k3sx-lab/lab")
STATE = "/run/k3sx-lab/state"
HOST_FILE = STATE + "/host.json"

DEFAULT_DELAYS = {
    "install": 0.2,  # install.sh "download" time (online mode, every run, like the real script)
    "start": 0.1,  # service start until systemd is notified (data dir extraction, etcd join)
    "ready": 0.3,  # service start until the Node is Ready
    "learner": 0.3,  # a new or restarted server is an etcd learner this long
    "metallb": 0.3,  # an applied Deployment (MetalLB's controller) becomes Available after this
    "webhook_lag": 0.0,  # the MetalLB webhook still refuses this long after its endpoints are ready
    "finalizer": 0.1,  # `kubectl delete node` of a server: the etcd member goes after this
    "grace": 1.5,  # a node (member) whose heartbeat is older is NotReady (dead)
    "heartbeat": 0.2,  # heartbeat period of every service
    "restart": 5.0,  # Restart=always: a failed service is started again after this
    "join_timeout": 10.0,  # a joiner retries an unreachable server this long, then fails
    "start_timeout": 90.0,  # `systemctl start` gives up after this (real: TimeoutStartSec=0)
}


def now():
    return time.time()


def read_json(path, default=None):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def atomic_write(path, data, mode=0o644):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.dirname(path) or "."
    os.makedirs(d, exist_ok=True)
    tmp = "%s/.%s.tmp%d" % (d, os.path.basename(path), os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def token_digest(token):
    """What the lab logs instead of a token: never the token itself."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()[:12]


# --- who am I -------------------------------------------------------------------------------


def host():
    info = read_json(HOST_FILE)
    if info is None:
        raise SystemExit("k3sx lab stand-in: %s is missing: this runs on a k3sx lab host only" % HOST_FILE)
    return info


def hostname():
    return socket.gethostname()


def config():
    cfg = read_json(os.path.join(LAB, "config.json"), {}) or {}
    delays = dict(DEFAULT_DELAYS)
    delays.update(cfg.get("delays") or {})
    cfg["delays"] = delays
    cfg.setdefault("releases", [])
    cfg.setdefault("faults", {})
    return cfg


def delay(name):
    return float(config()["delays"][name])


def fault(name, addr=None):
    """The fault `name` injected for this host (by address), or None."""
    if addr is None:
        addr = host()["addr"]
    return (config()["faults"].get(addr) or {}).get(name)


def event(kind, **fields):
    """Appends one line to the lab's event log (one write: lines of concurrent writers never mix)."""
    rec = {"ts": round(now(), 4), "event": kind}
    try:
        h = host()
        rec["host"] = hostname()
        rec["addr"] = h["addr"]
        rec["index"] = h["index"]
    except SystemExit:
        pass
    rec.update(fields)
    line = (json.dumps(rec, sort_keys=True) + "\n").encode()
    d = os.path.join(LAB, "log")
    os.makedirs(d, exist_ok=True)
    fd = os.open(os.path.join(d, "events.jsonl"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


# --- versions -------------------------------------------------------------------------------

VERSION_RE = re.compile(r"^v(\d+)\.(\d+)\.(\d+)(?:-(rc\d+))?\+k3s(\d+)$")


def parse_version(v):
    m = VERSION_RE.match(v or "")
    if not m:
        return None
    major, minor, patch, rc, k3s = m.groups()
    # A release candidate sorts before the release of the same k3sN.
    rc_key = (0, int(rc[2:])) if rc else (1, 0)
    return (int(major), int(minor), int(patch), int(k3s), rc_key)


def minor_of(v):
    p = parse_version(v)
    return (p[0], p[1]) if p else None


def version_key(v):
    return parse_version(v) or (0, 0, 0, 0, (0, 0))


def commit_of(v):
    return hashlib.sha1(v.encode()).hexdigest()[:8]


# --- addresses ------------------------------------------------------------------------------


def is_ip(s):
    try:
        ipaddress.ip_address(s)
        return True
    except ValueError:
        return False


def tcp_open(addr, port, timeout=0.3):
    try:
        with socket.create_connection((addr, port), timeout=timeout):
            return True
    except OSError:
        return False


# --- the host's NIC: its own address plus what was added (VIPs) -----------------------------


def nic_file():
    return os.path.join(STATE, "nic.json")


@contextlib.contextmanager
def nic_locked():
    os.makedirs(STATE, exist_ok=True)
    with open(os.path.join(STATE, "nic.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        nic = read_json(nic_file(), {"extra": []})
        before = json.dumps(nic, sort_keys=True)
        yield nic
        if json.dumps(nic, sort_keys=True) != before:
            atomic_write(nic_file(), json.dumps(nic, indent=1))


def nic_extra():
    return (read_json(nic_file(), {"extra": []}) or {}).get("extra", [])


# --- a small YAML reader and writer (enough for Kubernetes manifests and k3s config) ----------


class YamlError(ValueError):
    pass


_PLAIN_INT = re.compile(r"^[-+]?[0-9]+$")
_PLAIN_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")


def _typed(s):
    if s in ("", "~", "null", "Null", "NULL"):
        return None
    if s in ("true", "True", "TRUE"):
        return True
    if s in ("false", "False", "FALSE"):
        return False
    if _PLAIN_INT.match(s):
        return int(s)
    if _PLAIN_FLOAT.match(s) and any(c.isdigit() for c in s):
        try:
            return float(s)
        except ValueError:
            return s
    return s


def _strip_comment(s):
    """Removes a trailing ` # comment` outside quotes."""
    quote = None
    for i, c in enumerate(s):
        if quote:
            if c == quote:
                quote = None
            elif c == "\\" and quote == '"':
                continue
        elif c in "'\"" and (i == 0 or s[i - 1] in " \t[{,:"):
            quote = c
        elif c == "#" and (i == 0 or s[i - 1] in " \t"):
            return s[:i].rstrip()
    return s.rstrip()


def _key_split(s):
    """(key, rest) when `s` is a `key: value` line, else None."""
    if not s or s[0] in "[{" or s.startswith("- ") or s == "-":
        return None
    if s[0] in "'\"":
        q = s[0]
        i = 1
        while i < len(s):
            if s[i] == "\\" and q == '"':
                i += 2
                continue
            if s[i] == q:
                if q == "'" and i + 1 < len(s) and s[i + 1] == "'":
                    i += 2
                    continue
                break
            i += 1
        rest = s[i + 1 :].lstrip()
        if rest.startswith(":") and (len(rest) == 1 or rest[1] in " \t"):
            return _quoted(s[: i + 1]), rest[1:].strip()
        return None
    depth = 0
    for i, c in enumerate(s):
        if c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
        elif c == "#" and i > 0 and s[i - 1] in " \t":
            return None
        elif c == ":" and depth <= 0 and (i + 1 == len(s) or s[i + 1] in " \t"):
            return s[:i].strip(), s[i + 1 :].strip()
    return None


def _quoted(s):
    if s[0] == "'":
        return s[1:-1].replace("''", "'")
    return json.loads(s.replace("\t", "\\t")) if s.endswith('"') else s


class _Reader:
    def __init__(self, lines):
        self.lines = lines
        self.i = 0

    def skip(self):
        while self.i < len(self.lines):
            s = self.lines[self.i].strip()
            if s == "" or s.startswith("#"):
                self.i += 1
                continue
            break

    def peek(self):
        self.skip()
        if self.i >= len(self.lines):
            return None
        line = self.lines[self.i]
        content = line.lstrip(" ")
        return len(line) - len(content), _strip_comment(content)

    def block(self, indent):
        p = self.peek()
        if p is None:
            return None
        ind, content = p
        if content.startswith("- ") or content == "-":
            return self.seq(ind)
        if _key_split(content) is not None:
            return self.mapping(ind)
        self.i += 1
        return self.inline(content, indent - 1)

    def mapping(self, ind):
        out = {}
        while True:
            p = self.peek()
            if p is None or p[0] != ind:
                break
            kv = _key_split(p[1])
            if kv is None:
                if p[1].startswith("- "):
                    break
                raise YamlError("line %d: expected `key: value`: %r" % (self.i + 1, p[1]))
            key, rest = kv
            self.i += 1
            out[key] = self.value(rest, ind, in_map=True)
        return out

    def seq(self, ind):
        out = []
        while True:
            p = self.peek()
            if p is None or p[0] != ind or not (p[1].startswith("- ") or p[1] == "-"):
                break
            raw = self.lines[self.i]
            body = raw.lstrip(" ")[1:]
            rest = body.lstrip(" ")
            col = ind + 1 + (len(body) - len(rest))
            rest_nc = _strip_comment(rest)
            if rest_nc and (rest_nc.startswith("- ") or rest_nc == "-" or _key_split(rest_nc) is not None):
                # "- key: v" / "- - x": the rest is a node at its own column.
                self.lines[self.i] = " " * col + rest
                out.append(self.block(col))
            else:
                self.i += 1
                out.append(self.value(rest_nc, ind, in_map=False))
        return out

    def value(self, rest, ind, in_map):
        if rest == "" or rest.startswith("&") and " " not in rest:
            p = self.peek()
            if p is None:
                return None
            if p[0] > ind:
                return self.block(p[0])
            if in_map and p[0] == ind and (p[1].startswith("- ") or p[1] == "-"):
                return self.seq(ind)
            return None
        if rest.startswith("&"):
            rest = rest.split(None, 1)[1]
        if rest.startswith("!") and " " in rest:
            rest = rest.split(None, 1)[1]
        if rest[0] in "|>":
            return self.block_scalar(rest, ind)
        return self.inline(rest, ind)

    def inline(self, rest, ind):
        if rest[0] in "[{":
            text = rest
            while _flow_depth(text) > 0 and self.i < len(self.lines):
                text += " " + _strip_comment(self.lines[self.i].strip())
                self.i += 1
            val, pos = _flow(text, 0)
            return val
        if rest[0] == '"' and (len(rest) == 1 or not rest.endswith('"') or rest.endswith('\\"')):
            text = rest
            while self.i < len(self.lines) and not (text.endswith('"') and not text.endswith('\\"') and len(text) > 1):
                text += " " + self.lines[self.i].strip()
                self.i += 1
            return _quoted(text)
        if rest[0] in "'\"":
            return _quoted(rest)
        # A plain scalar may go on over more-indented lines.
        parts = [rest]
        while self.i < len(self.lines):
            line = self.lines[self.i]
            if line.strip() == "":
                parts.append("")
                self.i += 1
                continue
            lind = len(line) - len(line.lstrip(" "))
            if lind <= ind or line.strip().startswith("#"):
                break
            parts.append(_strip_comment(line.strip()))
            self.i += 1
        while parts and parts[-1] == "":
            parts.pop()
        if len(parts) == 1:
            return _typed(parts[0])
        text = ""
        for part in parts:
            if part == "":
                text += "\n"
            elif text and not text.endswith("\n"):
                text += " " + part
            else:
                text += part
        return text

    def block_scalar(self, header, ind):
        style, chomp = header[0], "clip"
        if "-" in header:
            chomp = "strip"
        elif "+" in header:
            chomp = "keep"
        lines = []
        content_ind = None
        while self.i < len(self.lines):
            line = self.lines[self.i]
            if line.strip() == "":
                lines.append("")
                self.i += 1
                continue
            lind = len(line) - len(line.lstrip(" "))
            if content_ind is None:
                if lind <= ind:
                    break
                content_ind = lind
            if lind < content_ind:
                break
            lines.append(line[content_ind:])
            self.i += 1
        trailing = 0
        while lines and lines[-1] == "":
            lines.pop()
            trailing += 1
        if style == "|":
            text = "\n".join(lines)
        else:
            text = ""
            for j, line in enumerate(lines):
                if j == 0:
                    text = line
                elif line == "" or line.startswith(" "):
                    text += "\n" + line
                elif text.endswith("\n") or lines[j - 1] == "":
                    text += line
                else:
                    text += " " + line
        if not lines:
            return ""
        if chomp == "strip":
            return text
        if chomp == "keep":
            return text + "\n" * (trailing + 1)
        return text + "\n"


def _flow_depth(s):
    depth, quote = 0, None
    for c in s:
        if quote:
            if c == quote:
                quote = None
        elif c in "'\"":
            quote = c
        elif c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
    return depth


def _flow(s, i):
    def ws(i):
        while i < len(s) and s[i] in " \t\n":
            i += 1
        return i

    i = ws(i)
    if i >= len(s):
        return None, i
    c = s[i]
    if c == "[":
        out = []
        i = ws(i + 1)
        while i < len(s) and s[i] != "]":
            v, i = _flow(s, i)
            out.append(v)
            i = ws(i)
            if i < len(s) and s[i] == ",":
                i = ws(i + 1)
        return out, i + 1
    if c == "{":
        out = {}
        i = ws(i + 1)
        while i < len(s) and s[i] != "}":
            k, i = _flow_scalar(s, i, key=True)
            i = ws(i)
            v = None
            if i < len(s) and s[i] == ":":
                v, i = _flow(s, i + 1)
            out[k] = v
            i = ws(i)
            if i < len(s) and s[i] == ",":
                i = ws(i + 1)
        return out, i + 1
    return _flow_scalar(s, i)


def _flow_scalar(s, i, key=False):
    if s[i] in "'\"":
        q = s[i]
        j = i + 1
        while j < len(s):
            if s[j] == "\\" and q == '"':
                j += 2
                continue
            if s[j] == q:
                if q == "'" and j + 1 < len(s) and s[j + 1] == "'":
                    j += 2
                    continue
                break
            j += 1
        return _quoted(s[i : j + 1]), j + 1
    j = i
    while j < len(s) and s[j] not in ",]}":
        if s[j] == ":" and (j + 1 == len(s) or s[j + 1] in " ,]}"):
            break
        j += 1
    text = s[i:j].strip()
    return (text if key else _typed(text)), j


def yaml_load_all(text):
    """The documents of a YAML (or JSON) stream; `kind: List` is not expanded here."""
    text = text.replace("\r\n", "\n").lstrip("\ufeff")
    stripped = text.strip()
    if stripped.startswith("{") or stripped.startswith("["):
        try:
            val = json.loads(stripped)
            return val if isinstance(val, list) and all(isinstance(v, dict) for v in val) else [val]
        except ValueError:
            pass
    docs, cur = [], []
    for line in text.split("\n"):
        if line.startswith("---") and (len(line) == 3 or line[3] in " \t"):
            docs.append(cur)
            rest = line[3:].strip()
            cur = [rest] if rest and not rest.startswith("#") else []
        elif line.rstrip() == "...":
            docs.append(cur)
            cur = []
        elif line.startswith("%"):
            continue
        else:
            cur.append(line)
    docs.append(cur)
    out = []
    for lines in docs:
        r = _Reader(lines)
        p = r.peek()
        if p is None:
            continue
        val = r.block(p[0])
        if r.peek() is not None:
            raise YamlError("line %d: unexpected content %r" % (r.i + 1, r.lines[r.i].strip()))
        if val is not None:
            out.append(val)
    return out


def yaml_load(text):
    docs = yaml_load_all(text)
    return docs[0] if docs else None


_NEEDS_QUOTES = re.compile(r"^[\s\-?:,\[\]{}#&*!|>'\"%@`]|[:#]\s|\s$|^$|[\n\t]|:$")


def _scalar_out(v):
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, (int, float)):
        return json.dumps(v)
    s = str(v)
    if _NEEDS_QUOTES.search(s) or _typed(s) != s or s.lower() in ("yes", "no", "on", "off", "y", "n"):
        return json.dumps(s)
    return s


def yaml_dump(v, indent=0):
    pad = " " * indent
    if isinstance(v, dict):
        if not v:
            return pad + "{}\n"
        out = ""
        for k, x in v.items():
            if isinstance(x, dict) and x:
                out += "%s%s:\n%s" % (pad, _scalar_out(k), yaml_dump(x, indent + 2))
            elif isinstance(x, list) and x:
                out += "%s%s:\n%s" % (pad, _scalar_out(k), yaml_dump(x, indent))
            else:
                out += "%s%s: %s\n" % (pad, _scalar_out(k), yaml_dump(x, 0).strip())
        return out
    if isinstance(v, list):
        if not v:
            return pad + "[]\n"
        out = ""
        for x in v:
            if isinstance(x, (dict, list)) and x:
                inner = yaml_dump(x, indent + 2)
                out += pad + "- " + inner[indent + 2 :]
            else:
                out += "%s- %s\n" % (pad, yaml_dump(x, 0).strip())
        return out
    return pad + _scalar_out(v) + "\n"


# --- the clusters' datastore ----------------------------------------------------------------
#
# Stand-in simplification: one JSON file per cluster in the lab-wide directory plays the
# replicated etcd. Every live server reads and writes it (under an flock); quorum is
# enforced from the members' heartbeats, so a cluster survives what etcd would survive.


class Store:
    def __init__(self, cid, lab=None):
        self.cid = cid
        self.dir = os.path.join(lab or LAB, "clusters", cid)

    @staticmethod
    def create(state, lab=None):
        s = Store(state["id"], lab)
        os.makedirs(os.path.join(s.dir, "hb"), exist_ok=True)
        atomic_write(os.path.join(s.dir, "state.json"), json.dumps(state))
        return s

    def exists(self):
        return os.path.exists(os.path.join(self.dir, "state.json"))

    def load(self):
        st = read_json(os.path.join(self.dir, "state.json"))
        if st is None:
            raise RuntimeError("cluster datastore %s is gone" % self.cid)
        return st

    @contextlib.contextmanager
    def locked(self):
        with open(os.path.join(self.dir, "lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            st = self.load()
            yield st
            st["rev"] = st.get("rev", 0) + 1
            atomic_write(os.path.join(self.dir, "state.json"), json.dumps(st))

    def beat(self, node, info):
        atomic_write(os.path.join(self.dir, "hb", node), json.dumps(info))

    def heartbeat(self, node):
        """(age in seconds, info) of the node's last heartbeat, or None."""
        path = os.path.join(self.dir, "hb", node)
        try:
            age = now() - os.stat(path).st_mtime
        except OSError:
            return None
        return age, read_json(path, {}) or {}

    def forget_heartbeat(self, node):
        with contextlib.suppress(OSError):
            os.remove(os.path.join(self.dir, "hb", node))


def all_clusters(lab=None):
    d = os.path.join(lab or LAB, "clusters")
    out = []
    for cid in sorted(os.listdir(d)) if os.path.isdir(d) else []:
        st = read_json(os.path.join(d, cid, "state.json"))
        if st:
            out.append(st)
    out.sort(key=lambda s: s.get("created", 0))
    return out
