"""The stand-in cluster's Kubernetes side: Nodes, applied objects, a small pod model, and
the kubectl verbs the k3sx workflows use. Pure functions over the cluster state (a dict,
see labcommon.Store); the API server in `k3s` calls them under the datastore lock.

Simplified on purpose (README.md): no scheduler beyond "least loaded Ready node", no
controllers beyond Deployment availability, DaemonSet pods on matching nodes, Service
endpoints from pod labels, MetalLB's validating webhook, and the etcd member finalizer.
"""

import hashlib
import ipaddress
import json
import re
import time

import labcommon as L

CORE_NAMESPACES = ["default", "kube-system", "kube-public", "kube-node-lease"]

# Kind: (group, namespaced, plural, short names)
BUILTIN = {
    "Namespace": ("", False, "namespaces", ["ns"]),
    "Node": ("", False, "nodes", ["no"]),
    "Pod": ("", True, "pods", ["po"]),
    "Service": ("", True, "services", ["svc"]),
    "Endpoints": ("", True, "endpoints", ["ep"]),
    "ConfigMap": ("", True, "configmaps", ["cm"]),
    "Secret": ("", True, "secrets", []),
    "ServiceAccount": ("", True, "serviceaccounts", ["sa"]),
    "PersistentVolumeClaim": ("", True, "persistentvolumeclaims", ["pvc"]),
    "PersistentVolume": ("", False, "persistentvolumes", ["pv"]),
    "Deployment": ("apps", True, "deployments", ["deploy"]),
    "DaemonSet": ("apps", True, "daemonsets", ["ds"]),
    "StatefulSet": ("apps", True, "statefulsets", ["sts"]),
    "ReplicaSet": ("apps", True, "replicasets", ["rs"]),
    "Job": ("batch", True, "jobs", []),
    "CronJob": ("batch", True, "cronjobs", ["cj"]),
    "Role": ("rbac.authorization.k8s.io", True, "roles", []),
    "RoleBinding": ("rbac.authorization.k8s.io", True, "rolebindings", []),
    "ClusterRole": ("rbac.authorization.k8s.io", False, "clusterroles", []),
    "ClusterRoleBinding": ("rbac.authorization.k8s.io", False, "clusterrolebindings", []),
    "CustomResourceDefinition": ("apiextensions.k8s.io", False, "customresourcedefinitions", ["crd", "crds"]),
    "ValidatingWebhookConfiguration": ("admissionregistration.k8s.io", False, "validatingwebhookconfigurations", []),
    "MutatingWebhookConfiguration": ("admissionregistration.k8s.io", False, "mutatingwebhookconfigurations", []),
    "StorageClass": ("storage.k8s.io", False, "storageclasses", ["sc"]),
    "PriorityClass": ("scheduling.k8s.io", False, "priorityclasses", ["pc"]),
    "PodDisruptionBudget": ("policy", True, "poddisruptionbudgets", ["pdb"]),
    "Ingress": ("networking.k8s.io", True, "ingresses", ["ing"]),
    "NetworkPolicy": ("networking.k8s.io", True, "networkpolicies", ["netpol"]),
    "Lease": ("coordination.k8s.io", True, "leases", []),
    "HelmChart": ("helm.cattle.io", True, "helmcharts", []),
    "HelmChartConfig": ("helm.cattle.io", True, "helmchartconfigs", []),
    "Addon": ("k3s.cattle.io", True, "addons", []),
}
VIRTUAL = {"Node", "Pod", "Endpoints"}  # computed, never stored from an apply


class KubeError(Exception):
    pass


def iso(ts):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def age(ts, now):
    s = max(0, int(now - ts))
    if s < 120:
        return "%ds" % s
    if s < 7200:
        return "%dm" % (s // 60)
    return "%dh" % (s // 3600)


def short_hash(*parts, n=10):
    h = hashlib.sha256("/".join(parts).encode()).hexdigest()
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    return "".join(alphabet[int(h[i : i + 2], 16) % len(alphabet)] for i in range(0, 2 * n, 2))


# --- the cluster's world, as a view over state + liveness -----------------------------------


class World:
    """The state plus what is computed from heartbeats: which nodes are alive and Ready."""

    def __init__(self, store, state, now=None, delays=None):
        self.store = store
        self.st = state
        self.now = now or L.now()
        self.delays = delays or L.config()["delays"]
        self._alive = {}

    def alive(self, name):
        if name not in self._alive:
            rec = self.st["nodes"].get(name)
            hb = self.store.heartbeat(name) if self.store else None
            ok = bool(
                rec
                and hb
                and hb[0] < float(self.delays["grace"])
                and hb[1].get("started") == rec.get("started")
            )
            self._alive[name] = ok
        return self._alive[name]

    def heartbeat_ts(self, name):
        hb = self.store.heartbeat(name) if self.store else None
        return self.now - hb[0] if hb else self.st["nodes"].get(name, {}).get("started", self.now)

    def ready(self, name):
        rec = self.st["nodes"].get(name)
        if not rec or not self.alive(name):
            return False
        at = rec.get("ready_at")
        return at is not None and self.now >= at

    def member_of(self, name):
        rec = self.st["nodes"].get(name) or {}
        return self.st.get("members", {}).get(rec.get("member") or "")

    def member_alive(self, mid):
        m = self.st["members"].get(mid)
        if not m:
            return False
        rec = self.st["nodes"].get(m["node"])
        if not rec or rec.get("member") != mid:
            return False
        return self.alive(m["node"])

    def quorum(self):
        voters = [mid for mid, m in self.st.get("members", {}).items() if m.get("voter")]
        if not voters:
            return True
        up = sum(1 for mid in voters if self.member_alive(mid))
        return up * 2 > len(voters)

    def servers(self):
        return sorted(n for n, r in self.st["nodes"].items() if r["role"] == "server")

    def schedulable(self, name):
        rec = self.st["nodes"][name]
        return self.ready(name) and not rec.get("unschedulable")


def node_labels(rec, etcd):
    name = rec["name"]
    labels = {
        "beta.kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/instance-type": "k3s",
        "beta.kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "node.kubernetes.io/instance-type": "k3s",
    }
    if rec["role"] == "server":
        labels["node-role.kubernetes.io/control-plane"] = "true"
        labels["node-role.kubernetes.io/master"] = "true"
        if etcd:
            labels["node-role.kubernetes.io/etcd"] = "true"
    labels.update(rec.get("flag_labels") or {})
    labels.update(rec.get("labels") or {})
    return labels


def condition(ctype, status, reason, message, hb, since):
    return {
        "type": ctype,
        "status": status,
        "lastHeartbeatTime": iso(hb),
        "lastTransitionTime": iso(since),
        "reason": reason,
        "message": message,
    }


def node_json(w, name):
    st = w.st
    rec = st["nodes"][name]
    etcd = st.get("datastore") == "etcd"
    alive = w.alive(name)
    hb = w.heartbeat_ts(name)
    started = rec["started"]
    unknown = ("Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status.")
    conds = []

    def ok(ctype, reason, message):
        if alive:
            conds.append(condition(ctype, "False", reason, message, hb, started))
        else:
            conds.append(condition(ctype, *unknown, hb, hb))

    # Kubernetes gives no order; here Ready is neither first nor last, on every node.
    ok("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available")
    ok("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure")
    if w.ready(name):
        conds.append(condition("Ready", "True", "KubeletReady", "kubelet is posting ready status", hb, rec["ready_at"]))
    elif alive:
        conds.append(
            condition(
                "Ready",
                "False",
                "KubeletNotReady",
                "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady "
                "message:Network plugin returns error: cni plugin not initialized",
                hb,
                started,
            )
        )
    else:
        conds.append(condition("Ready", *unknown, hb, hb))
    ok("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available")
    conds.append(
        condition("NetworkUnavailable", "False", "FlannelIsUp", "Flannel is running on this node", started, started)
    )
    if rec["role"] == "server" and etcd:
        m = w.member_of(name)
        if m is None:
            conds.append(
                condition("EtcdIsVoter", "False", "MemberNotFound", "Node is not a member of the etcd cluster", hb, hb)
            )
        elif m.get("voter"):
            conds.append(
                condition(
                    "EtcdIsVoter",
                    "True",
                    "MemberIsVoter",
                    "Node is a voting member of the etcd cluster",
                    hb,
                    m.get("voter_since", started),
                )
            )
        else:
            conds.append(
                condition(
                    "EtcdIsVoter",
                    "False",
                    "MemberIsLearner",
                    "Node is a non-voting member of the etcd cluster",
                    hb,
                    m.get("learner_since", started),
                )
            )
    taints = list(rec.get("taints") or [])
    if rec.get("unschedulable"):
        taints.append({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule", "timeAdded": iso(w.now)})
    if not alive:
        taints.append({"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule", "timeAdded": iso(hb)})
        taints.append({"key": "node.kubernetes.io/unreachable", "effect": "NoExecute", "timeAdded": iso(hb)})
    elif not w.ready(name):
        taints.append({"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule", "timeAdded": iso(started)})
    annotations = {
        "alpha.kubernetes.io/provided-node-ip": rec["addr"],
        "flannel.alpha.coreos.com/backend-type": "vxlan",
        "flannel.alpha.coreos.com/public-ip": rec["addr"],
        "k3s.io/hostname": rec.get("hostname", name),
        "k3s.io/internal-ip": rec["addr"],
        "k3s.io/node-args": json.dumps(rec.get("args") or []),
        "node.alpha.kubernetes.io/ttl": "0",
        "volumes.kubernetes.io/controller-managed-attach-detach": "true",
    }
    if rec["role"] == "server" and etcd:
        annotations["etcd.k3s.cattle.io/node-address"] = rec["addr"]
        annotations["etcd.k3s.cattle.io/node-name"] = rec.get("member") or ""
    annotations.update(rec.get("annotations") or {})
    idx = rec.get("pod_index", 0)
    spec = {
        "podCIDR": "10.42.%d.0/24" % idx,
        "podCIDRs": ["10.42.%d.0/24" % idx],
        "providerID": "k3s://%s" % name,
    }
    if taints:
        spec["taints"] = taints
    if rec.get("unschedulable"):
        spec["unschedulable"] = True
    ver = rec["version"]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "annotations": annotations,
            "creationTimestamp": iso(rec["created"]),
            "finalizers": ["wrangler.cattle.io/node"] + (["wrangler.cattle.io/managed-etcd-controller"] if rec["role"] == "server" and etcd else []),
            "labels": node_labels(rec, etcd),
            "name": name,
            "resourceVersion": str(st.get("rev", 1)),
            "uid": rec.get("uid", ""),
        },
        "spec": spec,
        "status": {
            "addresses": [{"address": rec["addr"], "type": "InternalIP"}, {"address": name, "type": "Hostname"}],
            "allocatable": {"cpu": "2", "ephemeral-storage": "19316953466", "memory": "3900000Ki", "pods": "110"},
            "capacity": {"cpu": "2", "ephemeral-storage": "19857420Ki", "memory": "4000000Ki", "pods": "110"},
            "conditions": conds,
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "architecture": "amd64",
                "bootID": rec.get("boot_id", ""),
                "containerRuntimeVersion": "containerd://2.0.4-k3s2",
                "kernelVersion": rec.get("kernel", "6.1.0-lab"),
                "kubeProxyVersion": ver,
                "kubeletVersion": ver,
                "machineID": rec.get("machine_id", ""),
                "operatingSystem": "linux",
                "osImage": "Debian GNU/Linux 12 (bookworm)",
                "systemUUID": rec.get("uid", ""),
            },
        },
    }


def node_status_text(w, name):
    rec = w.st["nodes"][name]
    s = "Ready" if w.ready(name) else ("NotReady" if True else "")
    if rec.get("unschedulable"):
        s += ",SchedulingDisabled"
    return s


def node_roles(w, name):
    labels = node_labels(w.st["nodes"][name], w.st.get("datastore") == "etcd")
    roles = sorted(k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/"))
    return ",".join(roles) or "<none>"


# --- objects --------------------------------------------------------------------------------


def key_of(group, kind, ns, name):
    return "%s|%s|%s|%s" % (group, kind, ns or "", name)


def resource_types(st):
    """Kind -> (group, namespaced, plural, shorts) for built-ins and installed CRDs."""
    out = {(v[0], k): v for k, v in BUILTIN.items()}
    for ck, c in (st.get("crds") or {}).items():
        group, kind = ck.split("|", 1)
        out[(group, kind)] = (group, c["namespaced"], c["plural"], c.get("short") or [])
    return out


def resolve(st, word):
    """(group, kind, namespaced, plural) for a resource word: `deploy`, `deployments.apps`,
    `IPAddressPool`, `ipaddresspools.metallb.io`."""
    w = word.lower()
    for (group, kind), (g, namespaced, plural, shorts) in resource_types(st).items():
        names = {kind.lower(), plural, *shorts}
        full = {n + "." + group for n in names} if group else set()
        if w in names or w in full:
            return group, kind, namespaced, plural
    raise KubeError('error: the server doesn\'t have a resource type "%s"' % word)


def kind_for_apply(st, obj, source):
    api = obj.get("apiVersion") or ""
    kind = obj.get("kind") or ""
    group = api.split("/", 1)[0] if "/" in api else ""
    types = resource_types(st)
    if (group, kind) not in types:
        name = (obj.get("metadata") or {}).get("name", "")
        ns = (obj.get("metadata") or {}).get("namespace", "")
        raise KubeError(
            'error: resource mapping not found for name: "%s" namespace: "%s" from "%s": no matches for kind "%s" '
            'in version "%s"\nensure CRDs are installed first' % (name, ns, source, kind, api)
        )
    return group, kind, types[(group, kind)][1], types[(group, kind)][2]


def type_label(group, kind):
    return kind.lower() + ("." + group if group else "")


def objects(st, group, kind, ns=None):
    out = []
    for k, o in (st.get("objects") or {}).items():
        g, kd, n, _ = k.split("|", 3)
        if g == group and kd == kind and (ns is None or n == ns):
            out.append(o)
    out.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
    return out


def get_object(st, group, kind, ns, name):
    return (st.get("objects") or {}).get(key_of(group, kind, ns, name))


def namespace_exists(st, ns):
    return ns in CORE_NAMESPACES or get_object(st, "", "Namespace", "", ns) is not None


def store_object(st, group, kind, ns, obj, now):
    """Creates or updates; returns 'created', 'configured' or 'unchanged'."""
    st.setdefault("objects", {})
    meta = obj.setdefault("metadata", {})
    if ns:
        meta["namespace"] = ns
    key = key_of(group, kind, ns, meta["name"])
    old = st["objects"].get(key)
    clean = json.loads(json.dumps(obj))
    for m in (clean["metadata"],):
        for f in ("creationTimestamp", "resourceVersion", "uid", "generation", "managedFields"):
            m.pop(f, None)
    if old is not None:
        prev = {k: v for k, v in old.items() if not k.startswith("_")}
        prev_meta = dict(prev.get("metadata") or {})
        for f in ("creationTimestamp", "resourceVersion", "uid", "generation"):
            prev_meta.pop(f, None)
        prev["metadata"] = prev_meta
        if json.dumps(prev, sort_keys=True) == json.dumps(clean, sort_keys=True):
            return "unchanged"
        clean["_created"] = old.get("_created", now)
        clean["_applied"] = now if (old.get("spec") or {}).get("template") != (clean.get("spec") or {}).get("template") else old.get("_applied", now)
        result = "configured"
    else:
        clean["_created"] = now
        clean["_applied"] = now
        result = "created"
    clean["metadata"]["creationTimestamp"] = iso(clean["_created"])
    clean["metadata"]["uid"] = old["metadata"].get("uid") if old else short_hash(key, str(now), n=8)
    st["objects"][key] = clean
    if kind == "CustomResourceDefinition" and group == "apiextensions.k8s.io":
        spec = clean.get("spec") or {}
        names = spec.get("names") or {}
        st.setdefault("crds", {})["%s|%s" % (spec.get("group"), names.get("kind"))] = {
            "plural": names.get("plural", ""),
            "singular": names.get("singular", ""),
            "short": names.get("shortNames") or [],
            "namespaced": spec.get("scope", "Namespaced") == "Namespaced",
        }
    return result


def public(obj):
    return {k: v for k, v in obj.items() if not k.startswith("_")}


def system_objects(disabled, servicelb):
    """What K3s itself deploys in kube-system (packaged manifests), unless disabled."""
    out = []

    def deploy(name, labels, emptydir=False):
        spec = {"containers": [{"name": name, "image": "rancher/mirrored-%s" % name}]}
        if emptydir:
            spec["volumes"] = [{"name": "tmp-dir", "emptyDir": {}}]
        out.append(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": name, "namespace": "kube-system", "labels": labels},
                "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}, "spec": spec}},
            }
        )

    if "coredns" not in disabled:
        deploy("coredns", {"k8s-app": "kube-dns"})
    if "local-storage" not in disabled:
        deploy("local-path-provisioner", {"app": "local-path-provisioner"})
    if "metrics-server" not in disabled:
        deploy("metrics-server", {"k8s-app": "metrics-server"}, emptydir=True)
    if "traefik" not in disabled:
        deploy("traefik", {"app.kubernetes.io/name": "traefik"})
        if servicelb:
            labels = {"app": "svclb-traefik"}
            out.append(
                {
                    "apiVersion": "apps/v1",
                    "kind": "DaemonSet",
                    "metadata": {"name": "svclb-traefik-" + short_hash("traefik", n=8), "namespace": "kube-system"},
                    "spec": {"selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}, "spec": {}}},
                }
            )
    return out


# --- pods -----------------------------------------------------------------------------------


def _match_expressions(labels, exprs):
    for e in exprs or []:
        k, op, vals = e.get("key"), e.get("operator"), e.get("values") or []
        if op == "Exists" and k not in labels:
            return False
        if op == "DoesNotExist" and k in labels:
            return False
        if op == "In" and labels.get(k) not in vals:
            return False
        if op == "NotIn" and labels.get(k) in vals:
            return False
    return True


def node_fits(w, name, podspec):
    labels = node_labels(w.st["nodes"][name], w.st.get("datastore") == "etcd")
    for k, v in (podspec.get("nodeSelector") or {}).items():
        if labels.get(k) != str(v):
            return False
    terms = (
        ((podspec.get("affinity") or {}).get("nodeAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution")
        or {}
    ).get("nodeSelectorTerms")
    if terms and not any(_match_expressions(labels, t.get("matchExpressions")) for t in terms):
        return False
    return True


def deployment_pods_ready_at(obj, placement, w):
    return max(placement["since"], obj.get("_applied", 0)) + float(w.delays["metallb"])


def pods(w):
    """Every pod: Deployment replicas (placed by reconcile) and DaemonSet pods (one per fitting node)."""
    out = []
    st = w.st
    for o in objects(st, "apps", "Deployment"):
        ns, name = o["metadata"]["namespace"], o["metadata"]["name"]
        spec = o.get("spec") or {}
        tmpl = spec.get("template") or {}
        podspec = tmpl.get("spec") or {}
        replicas = spec.get("replicas", 1)
        for r in range(int(replicas if replicas is not None else 1)):
            pl = (st.get("placements") or {}).get("%s/%s/%d" % (ns, name, r))
            node = pl["node"] if pl and pl["node"] in st["nodes"] else None
            ready = bool(node and w.ready(node) and w.now >= deployment_pods_ready_at(o, pl, w))
            pod_name = pl["pod"] if pl else "%s-%s-%s" % (name, short_hash(ns, name), short_hash(ns, name, str(r), n=5))
            out.append(_pod(w, ns, pod_name, tmpl, podspec, node, ready, ("ReplicaSet", name + "-" + short_hash(ns, name)), pl["since"] if pl else o["_created"]))
    for o in objects(st, "apps", "DaemonSet"):
        ns, name = o["metadata"]["namespace"], o["metadata"]["name"]
        tmpl = (o.get("spec") or {}).get("template") or {}
        podspec = tmpl.get("spec") or {}
        for node in sorted(st["nodes"]):
            if not node_fits(w, node, podspec):
                continue
            ready = w.ready(node)
            since = max(o["_created"], st["nodes"][node]["created"])
            out.append(_pod(w, ns, "%s-%s" % (name, short_hash(ns, name, node, n=5)), tmpl, podspec, node, ready, ("DaemonSet", name), since))
    return out


def _pod(w, ns, name, tmpl, podspec, node, ready, owner, since):
    labels = dict((tmpl.get("metadata") or {}).get("labels") or {})
    rec = w.st["nodes"].get(node) if node else None
    ip = None
    if node and rec:
        ip = rec["addr"] if podspec.get("hostNetwork") else "10.42.%d.%d" % (rec.get("pod_index", 0), 2 + int(short_hash(name, n=2).encode().hex(), 16) % 250)
    status = {"phase": "Running" if node else "Pending", "conditions": [
        {"type": "PodScheduled", "status": "True" if node else "False"},
        {"type": "Initialized", "status": "True" if node else "False"},
        {"type": "ContainersReady", "status": "True" if ready else "False"},
        {"type": "Ready", "status": "True" if ready else "False"},
    ]}
    if ip:
        status["podIP"] = ip
        status["hostIP"] = rec["addr"]
    status["containerStatuses"] = [
        {"name": c.get("name", "c"), "ready": ready, "restartCount": 0, "image": c.get("image", ""), "started": ready}
        for c in (podspec.get("containers") or [{"name": "main"}])
    ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": labels,
            "creationTimestamp": iso(since),
            "ownerReferences": [{"kind": owner[0], "name": owner[1], "controller": True}],
        },
        "spec": {**({"nodeName": node} if node else {}), **{k: v for k, v in podspec.items() if k in ("volumes", "hostNetwork", "nodeSelector")}},
        "status": status,
        "_emptydir": any("emptyDir" in v for v in podspec.get("volumes") or []),
        "_ds": owner[0] == "DaemonSet",
        "_ready": ready,
        "_since": since,
    }


def deployment_status(w, o):
    ns, name = o["metadata"]["namespace"], o["metadata"]["name"]
    mine = [p for p in pods(w) if p["metadata"]["namespace"] == ns and p["metadata"]["ownerReferences"][0]["name"].startswith(name + "-") and p["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"]
    want = (o.get("spec") or {}).get("replicas", 1)
    want = 1 if want is None else int(want)
    ready = sum(1 for p in mine if p["_ready"])
    available = ready >= want
    status = {
        "observedGeneration": 1,
        "replicas": len(mine),
        "updatedReplicas": len(mine),
        "conditions": [
            {
                "type": "Available",
                "status": "True" if available else "False",
                "reason": "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
                "message": "Deployment has minimum availability." if available else "Deployment does not have minimum availability.",
            },
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable" if available else "ReplicaSetUpdated"},
        ],
    }
    if ready:
        status["readyReplicas"] = ready
        status["availableReplicas"] = ready
    else:
        status["unavailableReplicas"] = want
    return status


def with_status(w, group, kind, o):
    out = public(o)
    if kind == "Deployment" and group == "apps":
        out["status"] = deployment_status(w, o)
    elif kind == "DaemonSet" and group == "apps":
        ns, name = o["metadata"]["namespace"], o["metadata"]["name"]
        mine = [p for p in pods(w) if p["metadata"]["namespace"] == ns and p["metadata"]["ownerReferences"][0] == {"kind": "DaemonSet", "name": name, "controller": True}]
        ready = sum(1 for p in mine if p["_ready"])
        out["status"] = {"desiredNumberScheduled": len(mine), "currentNumberScheduled": len(mine), "numberReady": ready, "numberAvailable": ready}
    elif kind == "Service" and group == "":
        out.setdefault("spec", {})["clusterIP"] = service_ip(w.st, o["metadata"]["namespace"], o["metadata"]["name"])
        out["spec"]["clusterIPs"] = [out["spec"]["clusterIP"]]
        if out["spec"].get("type") == "LoadBalancer":
            out["status"] = {"loadBalancer": {}}
    return out


def service_ip(st, ns, name):
    if (ns, name) == ("default", "kubernetes"):
        return "10.43.0.1"
    n = int(hashlib.sha256(("%s/%s" % (ns, name)).encode()).hexdigest()[:6], 16)
    return "10.43.%d.%d" % ((n >> 8) % 254 + 1, n % 254 + 1)


def endpoints_json(w, ns, name):
    svc = get_object(w.st, "", "Service", ns, name)
    if svc is None:
        return None
    selector = (svc.get("spec") or {}).get("selector") or {}
    ports = [{"port": p.get("targetPort", p.get("port")), "protocol": p.get("protocol", "TCP"), **({"name": p["name"]} if "name" in p else {})} for p in (svc.get("spec") or {}).get("ports") or []]
    ready, not_ready = [], []
    for p in pods(w):
        if p["metadata"]["namespace"] != ns or not selector or "podIP" not in p["status"]:
            continue
        if all(p["metadata"]["labels"].get(k) == v for k, v in selector.items()):
            addr = {"ip": p["status"]["podIP"], "nodeName": p["spec"]["nodeName"], "targetRef": {"kind": "Pod", "name": p["metadata"]["name"], "namespace": ns}}
            (ready if p["_ready"] else not_ready).append(addr)
    out = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name, "namespace": ns, "creationTimestamp": iso(svc["_created"])}}
    if ready or not_ready:
        subset = {"ports": ports}
        if ready:
            subset["addresses"] = ready
        if not_ready:
            subset["notReadyAddresses"] = not_ready
        out["subsets"] = [subset]
    return out


# --- reconcile: what controllers do between requests ----------------------------------------


def reconcile(w):
    """Placement of Deployment pods, due node deletions (the etcd member finalizer).
    Returns the events it caused; mutates w.st."""
    st = w.st
    events = []
    fin = float(w.delays["finalizer"])
    for name, d in list((st.get("deleting") or {}).items()):
        if w.now >= d["at"] + fin:
            events += remove_node(st, name, members=not d.get("force"))
            st["deleting"].pop(name, None)
    st.setdefault("placements", {})
    wanted = set()
    for o in objects(st, "apps", "Deployment"):
        ns, name = o["metadata"]["namespace"], o["metadata"]["name"]
        podspec = ((o.get("spec") or {}).get("template") or {}).get("spec") or {}
        replicas = (o.get("spec") or {}).get("replicas", 1)
        for r in range(int(1 if replicas is None else replicas)):
            key = "%s/%s/%d" % (ns, name, r)
            wanted.add(key)
            pl = st["placements"].get(key)
            if pl and pl["node"] in st["nodes"]:
                continue
            node = pick_node(w, podspec, exclude=None)
            if node:
                st["placements"][key] = {"node": node, "since": w.now, "pod": "%s-%s-%s" % (name, short_hash(ns, name), short_hash(key, str(w.now), n=5))}
    for key in list(st["placements"]):
        if key not in wanted:
            del st["placements"][key]
    return events


def reconcile_due(w):
    """Whether reconcile would change anything: a due deletion, a pod to place or to drop."""
    fin = float(w.delays["finalizer"])
    if any(w.now >= d["at"] + fin for d in (w.st.get("deleting") or {}).values()):
        return True
    placements = w.st.get("placements") or {}
    wanted = set()
    for o in objects(w.st, "apps", "Deployment"):
        ns, name = o["metadata"]["namespace"], o["metadata"]["name"]
        podspec = ((o.get("spec") or {}).get("template") or {}).get("spec") or {}
        replicas = (o.get("spec") or {}).get("replicas", 1)
        for r in range(int(1 if replicas is None else replicas)):
            key = "%s/%s/%d" % (ns, name, r)
            wanted.add(key)
            pl = placements.get(key)
            if not (pl and pl["node"] in w.st["nodes"]) and pick_node(w, podspec, exclude=None):
                return True
    return any(k not in wanted for k in placements)


def pick_node(w, podspec, exclude):
    load = {}
    for pl in (w.st.get("placements") or {}).values():
        load[pl["node"]] = load.get(pl["node"], 0) + 1
    fits = [n for n in sorted(w.st["nodes"]) if n != exclude and w.schedulable(n) and node_fits(w, n, podspec)]
    if not fits:
        return None
    return min(fits, key=lambda n: (load.get(n, 0), n))


def remove_node(st, name, members=True):
    events = []
    rec = st["nodes"].pop(name, None)
    if rec is None:
        return events
    events.append(("node-deleted", {"node": name, "role": rec["role"]}))
    if members:
        for mid, m in list(st.get("members", {}).items()):
            if m["node"] == name:
                del st["members"][mid]
                st.setdefault("removed_members", []).append(mid)
                events.append(("etcd-member-removed", {"node": name, "member": mid}))
    for key, pl in list((st.get("placements") or {}).items()):
        if pl["node"] == name:
            del st["placements"][key]
    return events


# --- kubectl --------------------------------------------------------------------------------

FLAGS_WITH_VALUE = {
    "-n": "namespace", "--namespace": "namespace", "-o": "output", "--output": "output", "-l": "selector",
    "--selector": "selector", "--for": "for", "--timeout": "timeout", "--field-selector": "field_selector",
    "--grace-period": "grace_period", "--context": "context", "--request-timeout": "request_timeout",
    "--cluster": "cluster", "--user": "user", "--pod-selector": "pod_selector", "--wait": "wait",
    "--raw": "raw", "--sort-by": "sort_by", "--server-side": "server_side", "--field-manager": "field_manager",
    "--dry-run": "dry_run", "-c": "container", "--skip-wait-for-delete-timeout": "skip_wait",
}
BOOL_FLAGS = {
    "-A": "all_namespaces", "--all-namespaces": "all_namespaces", "--overwrite": "overwrite",
    "--ignore-daemonsets": "ignore_daemonsets", "--delete-emptydir-data": "delete_emptydir_data",
    "--delete-local-data": "delete_emptydir_data", "--force": "force", "--all": "all", "--no-headers": "no_headers",
    "--show-labels": "show_labels", "--ignore-not-found": "ignore_not_found", "--disable-eviction": "disable_eviction",
    "--insecure-skip-tls-verify": "insecure", "--now": "now", "--server-side": "server_side",
}


def parse_args(argv):
    pos, opts = [], {}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            pos += argv[i + 1 :]
            break
        if a.startswith("-") and a != "-":
            name, eq, val = a.partition("=")
            if not eq and len(name) > 2 and name[1] != "-" and "-" + name[1] in ("-n", "-o", "-l"):
                name, val, eq = name[:2], name[2:], "="
            if name in BOOL_FLAGS and (not eq or name not in FLAGS_WITH_VALUE):
                opts[BOOL_FLAGS[name]] = val if eq else True
            elif name in FLAGS_WITH_VALUE:
                if not eq:
                    i += 1
                    if i >= len(argv):
                        raise KubeError("error: flag needs an argument: %s" % name)
                    val = argv[i]
                opts[FLAGS_WITH_VALUE[name]] = val
            else:
                raise KubeError("error: unknown flag: %s\nSee 'kubectl --help' for usage." % name)
        else:
            pos.append(a)
        i += 1
    return pos, opts


def parse_duration(s, default=30.0):
    if s is None:
        return default
    s = str(s)
    if re.fullmatch(r"-?\d+(\.\d+)?", s):
        return float(s)
    total = 0.0
    for num, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", s):
        total += float(num) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total


def selector_match(labels, sel):
    if not sel:
        return True
    for term in sel.split(","):
        term = term.strip()
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "==" in term or "=" in term:
            k, v = re.split("==?", term, 1)
            if labels.get(k.strip()) != v.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


class Out:
    def __init__(self):
        self.out, self.err, self.code = [], [], 0

    def line(self, s):
        self.out.append(s)

    def error(self, s, code=1):
        self.err.append(s)
        self.code = code


def render(items, output, kind_rows, single, no_headers=False):
    """Prints items as kubectl does for -o json|yaml|name|jsonpath=... or the default table."""
    if output in ("json", "yaml"):
        doc = items[0] if single else {"apiVersion": "v1", "items": items, "kind": "List", "metadata": {"resourceVersion": ""}}
        return json.dumps(doc, indent=4) + "\n" if output == "json" else L.yaml_dump(doc)
    if output == "name":
        return "".join("%s/%s\n" % (kind_rows["type"], i["metadata"]["name"]) for i in items)
    if output and output.startswith("jsonpath="):
        doc = items[0] if single else {"apiVersion": "v1", "items": items, "kind": "List"}
        return jsonpath(doc, output[len("jsonpath="):])
    if output and output not in ("wide",):
        raise KubeError("error: unable to match a printer suitable for the output format \"%s\"" % output)
    headers, rows = kind_rows["headers"], [kind_rows["row"](i) for i in items]
    if not rows:
        return ""
    table = ([] if no_headers else [headers]) + rows
    widths = [max(len(str(r[c])) for r in table) for c in range(len(headers))]
    return "".join("   ".join(str(r[c]).ljust(widths[c]) for c in range(len(headers))).rstrip() + "\n" for r in table)


def jsonpath(doc, expr):
    """A subset of kubectl's JSONPath: {.a.b}, [*], [N], [?(@.k=="v")], {range ...}{end}, literals."""
    expr = expr.strip()
    if expr.startswith("'") and expr.endswith("'"):
        expr = expr[1:-1]
    out = []

    def evaluate(path, node):
        vals = [node]
        for tok in re.findall(r"\.\.?[^.\[]+|\[[^\]]*\]", path):
            nxt = []
            for v in vals:
                if tok.startswith("["):
                    inner = tok[1:-1]
                    if inner == "*":
                        nxt += v if isinstance(v, list) else list(v.values()) if isinstance(v, dict) else []
                    elif inner.startswith("?("):
                        m = re.match(r'\?\(@\.([\w.\-/]+)\s*==\s*["\']?([^"\')]*)["\']?\)', inner)
                        if m and isinstance(v, list):
                            for x in v:
                                cur = x
                                for part in m.group(1).split("."):
                                    cur = cur.get(part) if isinstance(cur, dict) else None
                                if str(cur) == m.group(2):
                                    nxt.append(x)
                    elif re.fullmatch(r"-?\d+", inner) and isinstance(v, list):
                        idx = int(inner)
                        if -len(v) <= idx < len(v):
                            nxt.append(v[idx])
                    elif isinstance(v, dict) and inner.strip("'\"") in v:
                        nxt.append(v[inner.strip("'\"")])
                else:
                    name = tok.lstrip(".")
                    if isinstance(v, dict) and name in v:
                        nxt.append(v[name])
            vals = nxt
        return vals

    def fmt(v):
        return json.dumps(v) if isinstance(v, (dict, list)) else ("true" if v is True else "false" if v is False else str(v))

    parts = re.findall(r"\{[^{}]*\}|[^{}]+", expr)
    i = 0

    def run(parts, node):
        res = ""
        j = 0
        while j < len(parts):
            p = parts[j]
            if p.startswith("{range "):
                depth, k = 1, j + 1
                while k < len(parts) and depth:
                    if parts[k].startswith("{range "):
                        depth += 1
                    elif parts[k] == "{end}":
                        depth -= 1
                    k += 1
                body = parts[j + 1 : k - 1]
                for item in evaluate(p[7:-1].strip().lstrip("@"), node):
                    res += run(body, item)
                j = k
                continue
            if p.startswith("{"):
                inner = p[1:-1].strip()
                if inner.startswith('"') and inner.endswith('"'):
                    res += json.loads(inner)
                else:
                    res += " ".join(fmt(v) for v in evaluate(inner.lstrip("@"), node))
            else:
                res += p
            j += 1
        return res

    out.append(run(parts, doc))
    return "".join(out)


def node_rows(w):
    return {
        "type": "node",
        "headers": ["NAME", "STATUS", "ROLES", "AGE", "VERSION"],
        "row": lambda n: [n["metadata"]["name"], node_status_text(w, n["metadata"]["name"]), node_roles(w, n["metadata"]["name"]), age(w.st["nodes"][n["metadata"]["name"]]["created"], w.now), n["status"]["nodeInfo"]["kubeletVersion"]],
    }


def generic_rows(w, group, kind, namespaced, all_ns):
    t = type_label(group, kind)
    if kind == "Pod":
        h = ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
        row = lambda p: [p["metadata"]["name"], "%d/1" % (1 if p["status"]["conditions"][3]["status"] == "True" else 0), p["status"]["phase"], 0, age(w.now - 1, w.now)]
    elif kind == "Deployment":
        h = ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
        row = lambda d: [d["metadata"]["name"], "%d/%d" % (d["status"].get("readyReplicas", 0), d["spec"].get("replicas", 1) or 1), d["status"]["updatedReplicas"], d["status"].get("availableReplicas", 0), age(L.now() - 1, L.now())]
    else:
        h = ["NAME", "AGE"]
        row = lambda o: [o["metadata"]["name"], "1s"]
    if namespaced and all_ns:
        h = ["NAMESPACE"] + h
        inner = row
        row = lambda o: [o["metadata"].get("namespace", "")] + inner(o)
    return {"type": t, "headers": h, "row": row}


def cmd_get(w, pos, opts, o):
    if opts.get("raw"):
        o.line("ok")
        return
    if not pos:
        raise KubeError("You must specify the type of resource to get. Use \"kubectl api-resources\" for a complete list of supported resources.")
    words = pos[0].split(",")
    names = pos[1:]
    if "/" in pos[0]:
        words, names = [pos[0].split("/", 1)[0]], [p.split("/", 1)[1] for p in pos]
    output = opts.get("output")
    for word in words:
        group, kind, namespaced, plural = resolve(w.st, word)
        ns = None if opts.get("all_namespaces") else opts.get("namespace") or "default"
        if not namespaced:
            ns = None
        if kind == "Node":
            items = [node_json(w, n) for n in sorted(w.st["nodes"])]
            rows = node_rows(w)
        elif kind == "Pod":
            items = [p for p in pods(w) if ns is None or p["metadata"]["namespace"] == ns]
            fs = opts.get("field_selector") or ""
            m = re.match(r"spec\.nodeName=(.*)", fs)
            if m:
                items = [p for p in items if p["spec"].get("nodeName") == m.group(1)]
            items = [{k: v for k, v in p.items() if not k.startswith("_")} for p in items]
            rows = generic_rows(w, group, kind, True, ns is None)
        elif kind == "Endpoints":
            svcs = objects(w.st, "", "Service", ns)
            items = [endpoints_json(w, s["metadata"]["namespace"], s["metadata"]["name"]) for s in svcs]
            rows = generic_rows(w, group, kind, True, ns is None)
        else:
            items = [with_status(w, group, kind, x) for x in objects(w.st, group, kind, ns)]
            rows = generic_rows(w, group, kind, namespaced, ns is None)
        items = [i for i in items if selector_match(i["metadata"].get("labels") or {}, opts.get("selector"))]
        if names:
            picked = []
            for n in names:
                found = [i for i in items if i["metadata"]["name"] == n]
                if found:
                    picked += found
                elif not opts.get("ignore_not_found"):
                    o.error('Error from server (NotFound): %s "%s" not found' % (plural + ("." + group if group else ""), n))
            items = picked
            if not items:
                return
        elif not items and output not in ("json", "yaml") and not (output or "").startswith("jsonpath"):
            where = "" if ns is None else " in %s namespace" % ns
            o.err.append("No resources found%s." % where)
            continue
        text = render(items, output, rows, single=len(names) == 1 and len(items) == 1, no_headers=opts.get("no_headers"))
        if text:
            o.out.append(text.rstrip("\n"))


def apply_docs(w, files, opts, o, admission):
    """kubectl apply -f: each document created/configured/unchanged, or an error naming it."""
    for f in files:
        try:
            docs = L.yaml_load_all(f["text"])
        except L.YamlError as e:
            o.error('error: error parsing %s: error converting YAML to JSON: yaml: %s' % (f["name"], e))
            continue
        flat = []
        for d in docs:
            if isinstance(d, dict) and d.get("kind") == "List" and isinstance(d.get("items"), list):
                flat += d["items"]
            elif isinstance(d, dict):
                flat.append(d)
        if not flat:
            o.error("error: no objects passed to apply")
        for obj in flat:
            try:
                apply_one(w, obj, f["name"], opts, o, admission)
            except KubeError as e:
                o.error(str(e))


def apply_one(w, obj, source, opts, o, admission):
    if not obj.get("kind") or not obj.get("apiVersion"):
        raise KubeError("error: error validating \"%s\": error validating data: [apiVersion not set, kind not set]; if you choose to ignore these errors, turn validation off with --validate=false" % source)
    name = (obj.get("metadata") or {}).get("name")
    if not name:
        raise KubeError('error: error when retrieving current configuration of:\nResource: "%s"\nfrom server for: "%s": resource name may not be empty' % (obj.get("kind"), source))
    group, kind, namespaced, plural = kind_for_apply(w.st, obj, source)
    if kind in VIRTUAL:
        raise KubeError("error: the k3sx lab stand-in does not accept %s objects from apply (%s)" % (kind, source))
    ns = None
    if namespaced:
        ns = (obj.get("metadata") or {}).get("namespace") or opts.get("namespace") or "default"
        if not namespace_exists(w.st, ns):
            raise KubeError('Error from server (NotFound): error when creating "%s": namespaces "%s" not found' % (source, ns))
    admission(group, kind, ns, obj, source)
    result = store_object(w.st, group, kind, ns, obj, w.now)
    o.line("%s/%s %s" % (type_label(group, kind), name, result))


def metallb_admission(w):
    """MetalLB's validating webhook (failurePolicy: Fail): refuses its kinds until the
    webhook Service has ready endpoints (plus webhook_lag), then validates pools."""

    def check(group, kind, ns, obj, source):
        if group != "metallb.io":
            return
        hook = kind.lower() + "validationwebhook.metallb.io"
        configured = any(
            any(h.get("name") == hook for h in (v.get("webhooks") or []))
            for v in objects(w.st, "admissionregistration.k8s.io", "ValidatingWebhookConfiguration")
        )
        if not configured:
            return
        svc_ns, svc_name = "metallb-system", "metallb-webhook-service"
        for v in objects(w.st, "admissionregistration.k8s.io", "ValidatingWebhookConfiguration"):
            for h in v.get("webhooks") or []:
                if h.get("name") == hook:
                    svc = ((h.get("clientConfig") or {}).get("service") or {})
                    svc_ns, svc_name = svc.get("namespace", svc_ns), svc.get("name", svc_name)
        ep = endpoints_json(w, svc_ns, svc_name)
        ready_since = webhook_ready_since(w, svc_ns, svc_name)
        verb = "creating" if get_object(w.st, group, kind, ns, obj["metadata"]["name"]) is None else "applying patch"
        if not (ep and any("addresses" in s for s in ep.get("subsets") or [])) or ready_since is None or w.now < ready_since + float(w.delays["webhook_lag"]):
            path = "validate-metallb-io-%s-%s" % ((obj.get("apiVersion") or "/v1beta1").split("/")[-1], kind.lower())
            raise KubeError(
                'Error from server (InternalError): error when %s "%s": Internal error occurred: failed calling webhook "%s": '
                'failed to call webhook: Post "https://%s.%s.svc:443/%s?timeout=10s": dial tcp %s:443: connect: connection refused'
                % (verb, source, hook, svc_name, svc_ns, path, service_ip(w.st, svc_ns, svc_name))
            )
        if kind == "IPAddressPool":
            for a in (obj.get("spec") or {}).get("addresses") or []:
                if not valid_pool_range(str(a)):
                    raise KubeError(
                        'Error from server (Forbidden): error when %s "%s": admission webhook "%s" denied the request: invalid CIDR "%s" in pool %s'
                        % (verb, source, hook, a, obj["metadata"]["name"])
                    )

    return check


def webhook_ready_since(w, ns, name):
    svc = get_object(w.st, "", "Service", ns, name)
    if not svc:
        return None
    selector = (svc.get("spec") or {}).get("selector") or {}
    times = []
    for o in objects(w.st, "apps", "Deployment", ns):
        labels = (((o.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}
        if selector and all(labels.get(k) == v for k, v in selector.items()):
            for key, pl in (w.st.get("placements") or {}).items():
                if key.startswith("%s/%s/" % (ns, o["metadata"]["name"])):
                    times.append(deployment_pods_ready_at(o, pl, w))
    return min(times) if times else None


def valid_pool_range(a):
    try:
        if "-" in a:
            lo, hi = (ipaddress.ip_address(x.strip()) for x in a.split("-", 1))
            return lo.version == hi.version and lo <= hi
        ipaddress.ip_network(a, strict=False)
        return "/" in a
    except ValueError:
        return False


def cmd_label(w, pos, opts, o):
    if len(pos) < 3:
        raise KubeError("error: at least one label update is required")
    group, kind, namespaced, plural = resolve(w.st, pos[0].split("/")[0])
    names = [pos[0].split("/", 1)[1]] if "/" in pos[0] else [pos[1]]
    changes = pos[1:] if "/" in pos[0] else pos[2:]
    for name in names:
        if kind == "Node":
            rec = w.st["nodes"].get(name)
            if rec is None:
                raise KubeError('Error from server (NotFound): nodes "%s" not found' % name)
            current = node_labels(rec, w.st.get("datastore") == "etcd")
            target = rec.setdefault("labels", {})
        else:
            ns = opts.get("namespace") or "default" if namespaced else None
            obj = get_object(w.st, group, kind, ns, name)
            if obj is None:
                raise KubeError('Error from server (NotFound): %s "%s" not found' % (plural, name))
            current = target = obj["metadata"].setdefault("labels", {})
        changed = False
        for c in changes:
            if c.endswith("-") and "=" not in c:
                k = c[:-1]
                if k in current:
                    target.pop(k, None)
                    if kind == "Node":
                        w.st["nodes"][name].setdefault("removed_labels", []).append(k)
                    changed = True
                continue
            if "=" not in c:
                raise KubeError("error: invalid label spec: %s" % c)
            k, v = c.split("=", 1)
            if k in current and current[k] != v and not opts.get("overwrite"):
                raise KubeError("error: '%s' already has a value (%s), and --overwrite is false" % (k, current[k]))
            if current.get(k) != v:
                target[k] = v
                changed = True
        o.line("%s/%s %s" % (type_label(group, kind), name, "labeled" if changed else "not labeled"))


def cmd_taint(w, pos, opts, o):
    if len(pos) < 3 or pos[0] not in ("node", "nodes", "no"):
        raise KubeError("error: at least one taint update is required")
    rec = w.st["nodes"].get(pos[1])
    if rec is None:
        raise KubeError('Error from server (NotFound): nodes "%s" not found' % pos[1])
    taints = rec.setdefault("taints", [])
    for spec in pos[2:]:
        if spec.endswith("-"):
            k = spec[:-1].split(":")[0]
            rec["taints"] = taints = [t for t in taints if t["key"] != k]
            continue
        kv, _, effect = spec.partition(":")
        k, _, v = kv.partition("=")
        taints[:] = [t for t in taints if not (t["key"] == k and t["effect"] == effect)]
        taints.append({"key": k, "value": v, "effect": effect} if v else {"key": k, "effect": effect})
    o.line("node/%s tainted" % pos[1])


def cmd_cordon(w, pos, opts, o, on):
    if not pos:
        raise KubeError("error: USAGE: cordon NODE [flags]")
    for name in pos:
        name = name.split("/", 1)[-1]
        rec = w.st["nodes"].get(name)
        if rec is None:
            raise KubeError('Error from server (NotFound): nodes "%s" not found' % name)
        if bool(rec.get("unschedulable")) == on:
            o.line("node/%s already %s" % (name, "cordoned" if on else "uncordoned"))
        else:
            rec["unschedulable"] = on
            o.line("node/%s %s" % (name, "cordoned" if on else "uncordoned"))


def cmd_drain(w, pos, opts, o):
    if not pos:
        raise KubeError("error: USAGE: drain NODE [flags]")
    name = pos[0].split("/", 1)[-1]
    rec = w.st["nodes"].get(name)
    if rec is None:
        raise KubeError('Error from server (NotFound): nodes "%s" not found' % name)
    if not rec.get("unschedulable"):
        rec["unschedulable"] = True
        o.line("node/%s cordoned" % name)
    else:
        o.line("node/%s already cordoned" % name)
    mine = [p for p in pods(w) if p["spec"].get("nodeName") == name]
    ds = [p for p in mine if p["_ds"]]
    local = [p for p in mine if p["_emptydir"] and not p["_ds"]]
    problems = []
    if ds and not opts.get("ignore_daemonsets"):
        problems.append("cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): " + ", ".join("%s/%s" % (p["metadata"]["namespace"], p["metadata"]["name"]) for p in ds))
    if local and not opts.get("delete_emptydir_data"):
        problems.append("cannot delete Pods with local storage (use --delete-emptydir-data to override): " + ", ".join("%s/%s" % (p["metadata"]["namespace"], p["metadata"]["name"]) for p in local))
    if problems:
        o.error("error: unable to drain node \"%s\" due to error: %s, continuing command...\nThere are pending nodes to be drained:\n %s\n%s" % (name, problems[0], name, "\n".join(problems)))
        return
    if ds:
        o.err.append("Warning: ignoring DaemonSet-managed Pods: " + ", ".join("%s/%s" % (p["metadata"]["namespace"], p["metadata"]["name"]) for p in ds))
    moved = []
    for key, pl in list((w.st.get("placements") or {}).items()):
        if pl["node"] == name:
            ns, dname, _ = key.rsplit("/", 2)
            o.line("evicting pod %s/%s" % (ns, pl["pod"]))
            moved.append(pl["pod"])
            obj = get_object(w.st, "apps", "Deployment", ns, dname)
            podspec = (((obj or {}).get("spec") or {}).get("template") or {}).get("spec") or {}
            target = pick_node(w, podspec, exclude=name)
            if target:
                w.st["placements"][key] = {"node": target, "since": w.now, "pod": "%s-%s-%s" % (dname, short_hash(ns, dname), short_hash(key, str(w.now), n=5))}
            else:
                del w.st["placements"][key]
    for p in moved:
        o.line("pod/%s evicted" % p)
    o.line("node/%s drained" % name)
