#!/usr/bin/env python3
"""Offline checks of deploy/ that no off-the-shelf validator does; run by scripts/check-deploy.sh
inside its venv (PyYAML, jsonschema). Each check prints what it looked at; any failure is
collected and the script exits 1 listing them all.

  check-deploy.py static ROOT              cross-references, CRD example, scheduler config,
                                           Grafana exprs against docs/metrics.md, image tags
  check-deploy.py promql-rules ROOT OUT    the dashboard's exprs as a rules file for promtool
  check-deploy.py dashboard-exprs ROOT     the dashboard's exprs, one per line, variables
                                           substituted (for queries against a live Prometheus)
"""

from __future__ import annotations

import copy
import json
import re
import sys
import tomllib
from pathlib import Path

import jsonschema
import yaml

FAILURES: list[str] = []


def fail(msg: str) -> None:
    FAILURES.append(msg)
    print(f"  FAIL {msg}")


def ok(msg: str) -> None:
    print(f"  ok   {msg}")


def load_all(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


# ---- Kubernetes -------------------------------------------------------------------------------

def k8s_objects(root: Path) -> list[tuple[Path, dict]]:
    out = []
    for f in sorted((root / "deploy/kubernetes").glob("*.yaml")):
        out.extend((f, d) for d in load_all(f))
    return out


def find(objs, kind, name, namespace=None):
    for _, o in objs:
        md = o.get("metadata", {})
        if o.get("kind") == kind and md.get("name") == name and (
            namespace is None or md.get("namespace") == namespace
        ):
            return o
    return None


def crd_schema(crd: dict, version: str) -> dict:
    for v in crd["spec"]["versions"]:
        if v["name"] == version:
            return v["schema"]["openAPIV3Schema"]
    raise KeyError(version)


def openapi_to_jsonschema(schema):
    """OpenAPI v3 structural schemas are JSON Schema plus x-kubernetes-* and `nullable`; drop
    those so a plain validator reads the rest with the same meaning."""
    if isinstance(schema, dict):
        return {
            k: openapi_to_jsonschema(v)
            for k, v in schema.items()
            if not k.startswith("x-kubernetes-") and k != "nullable"
        }
    if isinstance(schema, list):
        return [openapi_to_jsonschema(v) for v in schema]
    return schema


def closed(schema):
    """Like the API server's pruning, refuse unknown fields: additionalProperties false on every
    object that lists properties (and does not keep unknown fields)."""
    if isinstance(schema, dict):
        s = {k: closed(v) for k, v in schema.items()}
        if s.get("type") == "object" and "properties" in s and "additionalProperties" not in s:
            if not schema.get("x-kubernetes-preserve-unknown-fields"):
                s["additionalProperties"] = False
        return s
    if isinstance(schema, list):
        return [closed(v) for v in schema]
    return schema


def check_crd_example(root: Path, objs) -> None:
    crd = find(objs, "CustomResourceDefinition", "mlsysopsapps.mlsysops.eu")
    if crd is None:
        fail("no CustomResourceDefinition mlsysopsapps.mlsysops.eu in deploy/kubernetes")
        return
    spec = crd["spec"]
    group, kind = spec["group"], spec["names"]["kind"]
    for v in spec["versions"]:
        schema = closed(openapi_to_jsonschema(v["schema"]["openAPIV3Schema"]))
        jsonschema.Draft7Validator.check_schema(schema)
        validator = jsonschema.Draft7Validator(schema)
        examples = sorted((root / "deploy/kubernetes/examples").glob("*.yaml"))
        if not examples:
            fail("no example MLSysOpsApp under deploy/kubernetes/examples")
        for f in examples:
            for doc in load_all(f):
                if doc.get("apiVersion") != f"{group}/{v['name']}" or doc.get("kind") != kind:
                    fail(f"{f.name}: apiVersion/kind {doc.get('apiVersion')}/{doc.get('kind')} is not {group}/{v['name']}/{kind}")
                    continue
                errors = sorted(validator.iter_errors(doc), key=str)
                for e in errors:
                    fail(f"{f.name}: {'/'.join(map(str, e.absolute_path))}: {e.message}")
                if not errors:
                    ok(f"{f.name} is a valid {kind} per the CRD's openAPIV3Schema ({v['name']})")
                check_app_refs(f.name, doc)
                # The check must be able to fail: a broken copy of the example is refused.
                bad = copy.deepcopy(doc)
                bad["spec"]["buckets"][0]["redundancy"] = "sometimes"
                bad["spec"]["components"][0]["colour"] = "blue"
                n = len(list(validator.iter_errors(bad)))
                if n < 2:
                    fail(f"{f.name}: a wrong redundancy and an unknown field gave {n} errors, not 2")
                else:
                    ok(f"{f.name}: a broken copy (bad enum, unknown field) is refused ({n} errors)")


def check_app_refs(name: str, doc: dict) -> None:
    declared = {b["bucket_id"] for b in doc["spec"].get("buckets", [])}
    for c in doc["spec"]["components"]:
        for b in c.get("buckets", []):
            if b not in declared:
                fail(f"{name}: component {c['name']} uses bucket {b} that spec.buckets does not declare")


# The fields of KubeSchedulerConfiguration (kubescheduler.config.k8s.io/v1) and of its Extender,
# as upstream's v1 types spell them; a typo (say `filterverb`) is refused here, as it would
# be by kube-scheduler's strict decoding.
EXTENDER_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["urlPrefix"],
    "properties": {
        "urlPrefix": {"type": "string", "pattern": "^https?://"},
        "filterVerb": {"type": "string", "minLength": 1},
        "preemptVerb": {"type": "string"},
        "prioritizeVerb": {"type": "string", "minLength": 1},
        "weight": {"type": "integer", "minimum": 1},
        "bindVerb": {"type": "string"},
        "enableHTTPS": {"type": "boolean"},
        "tlsConfig": {"type": "object"},
        "httpTimeout": {"type": "string", "pattern": r"^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$"},
        "nodeCacheCapable": {"type": "boolean"},
        "managedResources": {"type": "array"},
        "ignorable": {"type": "boolean"},
    },
}
SCHEDULER_CONFIG_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind"],
    "properties": {
        "apiVersion": {"const": "kubescheduler.config.k8s.io/v1"},
        "kind": {"const": "KubeSchedulerConfiguration"},
        "parallelism": {"type": "integer"},
        "leaderElection": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                k: {"type": t}
                for k, t in {
                    "leaderElect": "boolean", "leaseDuration": "string", "renewDeadline": "string",
                    "retryPeriod": "string", "resourceLock": "string", "resourceName": "string",
                    "resourceNamespace": "string",
                }.items()
            },
        },
        "clientConnection": {"type": "object"},
        "enableProfiling": {"type": "boolean"},
        "enableContentionProfiling": {"type": "boolean"},
        "percentageOfNodesToScore": {"type": "integer"},
        "podInitialBackoffSeconds": {"type": "integer"},
        "podMaxBackoffSeconds": {"type": "integer"},
        "delayCacheUntilActive": {"type": "boolean"},
        "profiles": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "schedulerName": {"type": "string"},
                    "percentageOfNodesToScore": {"type": "integer"},
                    "plugins": {"type": "object"},
                    "pluginConfig": {"type": "array"},
                },
            },
        },
        "extenders": {"type": "array", "items": EXTENDER_SCHEMA},
    },
}


def check_scheduler_config(objs) -> None:
    cms = [o for _, o in objs if o.get("kind") == "ConfigMap" and "scheduler-config.yaml" in o.get("data", {})]
    if not cms:
        fail("no ConfigMap with scheduler-config.yaml in deploy/kubernetes")
        return
    for cm in cms:
        cfg = yaml.safe_load(cm["data"]["scheduler-config.yaml"])
        errors = list(jsonschema.Draft7Validator(SCHEDULER_CONFIG_SCHEMA).iter_errors(cfg))
        for e in errors:
            fail(f"ConfigMap {cm['metadata']['name']}: scheduler-config.yaml: {'/'.join(map(str, e.absolute_path))}: {e.message}")
        if not errors:
            ok(f"ConfigMap {cm['metadata']['name']}: KubeSchedulerConfiguration v1 fields and extender fields known")
        for ext in cfg.get("extenders", []):
            m = re.match(r"^https?://([^.:/]+)\.([^.:/]+)\.svc(?:\.cluster\.local)?:(\d+)(/.*)?$", ext["urlPrefix"])
            if not m:
                fail(f"extender urlPrefix {ext['urlPrefix']} is not a Service URL (NAME.NAMESPACE.svc:PORT)")
                continue
            svc_name, ns, port = m.group(1), m.group(2), int(m.group(3))
            svc = find(objs, "Service", svc_name, ns)
            if svc is None:
                fail(f"extender urlPrefix names Service {ns}/{svc_name}, which deploy/kubernetes does not define")
            elif port not in [p["port"] for p in svc["spec"]["ports"]]:
                fail(f"extender urlPrefix port {port} is not a port of Service {ns}/{svc_name}")
            else:
                ok(f"extender {ext['urlPrefix']} reaches Service {ns}/{svc_name} port {port}")
        for _, o in objs:
            if o.get("kind") != "Deployment":
                continue
            for v in o["spec"]["template"]["spec"].get("volumes", []):
                if v.get("configMap", {}).get("name") == cm["metadata"]["name"]:
                    names = [p.get("schedulerName") for p in cfg.get("profiles", [])]
                    ok(f"Deployment {o['metadata']['name']} mounts it (profiles {names})")


BACKEND_KEYS = {
    "local": {"path"},
    "memory": set(),
    "s3": {"bucket", "endpoint", "region", "access_key", "secret_key", "access_key_env",
           "secret_key_env", "path_style", "prefix", "timeout_secs", "max_retries"},
    "gcs": {"bucket", "service_account_path", "prefix", "timeout_secs", "max_retries"},
    "azure": {"container", "account", "access_key", "access_key_env", "use_emulator",
              "endpoint", "prefix", "timeout_secs", "max_retries"},
}
COMMON_KEYS = {"id", "kind", "labels", "faults"}


def check_gateway_toml(where: str, text: str) -> tuple[list[dict], set[str]]:
    """The [[backend]] tables by docs/configuration.md's table of keys (the live check starts the
    real binary on the same file); returns the backends and the env variables they name."""
    cfg = tomllib.loads(text)
    backends = cfg.get("backend", [])
    env_names: set[str] = set()
    if not backends:
        fail(f"{where}: no [[backend]] tables")
    ids = [b.get("id") for b in backends]
    if len(set(ids)) != len(ids):
        fail(f"{where}: backend ids are not unique: {ids}")
    for b in backends:
        kind = b.get("kind")
        if kind not in BACKEND_KEYS:
            fail(f"{where}: backend {b.get('id')}: unknown kind {kind}")
            continue
        extra = set(b) - BACKEND_KEYS[kind] - COMMON_KEYS
        if extra:
            fail(f"{where}: backend {b['id']}: keys {sorted(extra)} do not apply to kind {kind}")
        for k in ("access_key", "secret_key"):
            if k in b:
                fail(f"{where}: backend {b['id']}: {k} in the file; use {k}_env (keys come from secrets)")
        env_names |= {b[k] for k in ("access_key_env", "secret_key_env") if k in b}
    for k in ("access_key", "secret_key", "admin_token"):
        if k in cfg:
            fail(f"{where}: {k} in the file; it belongs in the environment (secret)")
    ok(f"{where}: {len(backends)} backends ({', '.join(map(str, ids))}), keys from env {sorted(env_names)}")
    return backends, env_names


def check_k8s_refs(objs) -> None:
    sts = find(objs, "StatefulSet", "mlsysops", "mlsysops")
    if sts is None:
        fail("no StatefulSet mlsysops/mlsysops")
        return
    pod = sts["spec"]["template"]["spec"]
    ns = sts["metadata"]["namespace"]
    c = pod["containers"][0]
    # Names it refers to exist.
    for ref in c.get("envFrom", []):
        name = ref.get("secretRef", {}).get("name")
        if name and find(objs, "Secret", name, ns) is None:
            fail(f"StatefulSet envFrom Secret {name} is not defined")
    for v in pod.get("volumes", []):
        name = v.get("configMap", {}).get("name")
        if name and find(objs, "ConfigMap", name, ns) is None:
            fail(f"StatefulSet volume ConfigMap {name} is not defined")
    if find(objs, "Service", sts["spec"]["serviceName"], ns) is None:
        fail(f"StatefulSet serviceName {sts['spec']['serviceName']} is not a Service")
    cm = find(objs, "ConfigMap", "mlsysops-config", ns)
    toml_cfg = tomllib.loads(cm["data"]["mlsysops.toml"])
    kube_cfg = toml_cfg.get("agents", {}).get("kubernetes", {})
    check_rbac(objs, pod.get("serviceAccountName"), ns, kube_cfg)
    check_listeners(objs, c, toml_cfg)
    # Service selectors pick the gateway's pods; target ports are its named ports.
    labels = sts["spec"]["template"]["metadata"]["labels"]
    port_names = {p["name"] for p in c["ports"]}
    for _, o in objs:
        if o.get("kind") == "Service" and o["metadata"].get("namespace") == ns:
            sel = o["spec"].get("selector", {})
            if any(labels.get(k) != v for k, v in sel.items()):
                fail(f"Service {o['metadata']['name']} selector {sel} does not match the gateway's labels")
            for p in o["spec"]["ports"]:
                if isinstance(p.get("targetPort"), str) and p["targetPort"] not in port_names:
                    fail(f"Service {o['metadata']['name']} targetPort {p['targetPort']} is not a container port")
    sc, csc = pod.get("securityContext", {}), c.get("securityContext", {})
    if not (sc.get("runAsNonRoot") and csc.get("allowPrivilegeEscalation") is False):
        fail("StatefulSet: not non-root or privilege escalation allowed")
    if not any(m["mountPath"] == "/data" for m in c["volumeMounts"]) or not sts["spec"].get("volumeClaimTemplates"):
        fail("StatefulSet: /data is not on a volumeClaimTemplate")
    for probe in ("readinessProbe", "livenessProbe"):
        if probe not in c:
            fail(f"StatefulSet: no {probe}")
    ok("StatefulSet: Secret, ConfigMap, Services, probes, non-root, /data on a claim")
    # The ConfigMap's TOML, and the Secret holds every variable it names.
    _, env_names = check_gateway_toml("ConfigMap mlsysops-config", cm["data"]["mlsysops.toml"])
    secret = find(objs, "Secret", "mlsysops-credentials", ns)
    keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
    missing = (env_names | {"MLSYSOPS_ADMIN_TOKEN", "MLSYSOPS_ACCESS_KEY", "MLSYSOPS_SECRET_KEY"}) - keys
    if missing:
        fail(f"Secret mlsysops-credentials lacks {sorted(missing)}")
    else:
        ok("Secret mlsysops-credentials holds every key the ConfigMap and the gateway read")


# What agents/src/k8s/controller.rs does with the API, per (apiGroup, resource): the watcher
# lists and watches apps, status goes in a merge patch on the subresource, each Deployment is
# read then merge-patched (list/watch for a Deployment cache).
CONTROLLER_VERBS = {
    ("mlsysops.eu", "mlsysopsapps"): {"list", "watch"},
    ("mlsysops.eu", "mlsysopsapps/status"): {"patch"},
    ("apps", "deployments"): {"get", "list", "watch", "patch"},
}


def check_rbac(objs, sa: str, ns: str, kube_cfg: dict) -> None:
    """The gateway's service account holds the controller's verbs in the namespace it watches."""
    if find(objs, "ServiceAccount", sa, ns) is None:
        fail(f"StatefulSet serviceAccountName {sa} is not a ServiceAccount in {ns}")
        return
    if not kube_cfg.get("controller"):
        ok("[agents.kubernetes] controller is off: no RBAC needed")
        return
    watched = kube_cfg.get("namespace")
    if not watched:
        fail("[agents.kubernetes] controller = true without namespace")
        return
    binds = [
        o for _, o in objs
        if o.get("kind") in ("ClusterRoleBinding", "RoleBinding")
        and any(s.get("kind") == "ServiceAccount" and s.get("name") == sa and s.get("namespace") == ns
                for s in o.get("subjects", []))
        and (o["kind"] == "ClusterRoleBinding" or o["metadata"].get("namespace") == watched)
    ]
    rules: dict[tuple[str, str], set[str]] = {}
    for b in binds:
        ref = b["roleRef"]
        role = find(objs, ref["kind"], ref["name"], None if ref["kind"] == "ClusterRole" else watched)
        if role is None:
            fail(f"{b['kind']} {b['metadata']['name']} refers to {ref['kind']} {ref['name']}, not defined here")
            continue
        for rule in role.get("rules", []):
            for g in rule["apiGroups"]:
                for r in rule["resources"]:
                    rules.setdefault((g, r), set()).update(rule["verbs"])
    missing = {k: sorted(v - rules.get(k, set())) for k, v in CONTROLLER_VERBS.items() if v - rules.get(k, set())}
    if missing:
        fail(f"ServiceAccount {ns}/{sa} lacks, in namespace {watched} (the controller's), {missing}")
    else:
        ok(f"ServiceAccount {ns}/{sa} holds the controller's verbs in namespace {watched} "
           f"({', '.join(b['kind'] + ' ' + b['metadata']['name'] for b in binds)})")
    extra = set(rules) - set(CONTROLLER_VERBS)
    if extra:
        fail(f"the controller's roles grant {sorted(extra)}, which controller.rs does not use")


def listen_port(toml_cfg: dict, table: str, key: str) -> int | None:
    t = toml_cfg
    for part in table.split("."):
        t = t.get(part, {})
    v = t.get(key)
    return int(v.rsplit(":", 1)[1]) if v else None


def check_listeners(objs, container: dict, toml_cfg: dict) -> None:
    """The link and extender listeners of the TOML are container ports, Service ports, and the
    unauthenticated extender is reachable only from the scheduler (NetworkPolicy)."""
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for name, table, key, svc_name in (
        ("link", "agents", "link_listen", "mlsysops-link"),
        ("extender", "agents.kubernetes", "extender_listen", "mlsysops-scheduler-extender"),
    ):
        port = listen_port(toml_cfg, table, key)
        if port is None:
            fail(f"ConfigMap TOML: no [{table}] {key}")
            continue
        svc = find(objs, "Service", svc_name, "mlsysops")
        if ports.get(name) != port:
            fail(f"[{table}] {key} listens on {port}, the container port {name} is {ports.get(name)}")
        elif svc is None or not any(p.get("targetPort") == name for p in svc["spec"]["ports"]):
            fail(f"no Service {svc_name} with targetPort {name}")
        else:
            ok(f"[{table}] {key} :{port} = container port {name} = Service {svc_name}")
    pols = [o for _, o in objs if o.get("kind") == "NetworkPolicy"]
    if not pols:
        fail("no NetworkPolicy restricting the unauthenticated extender port")
        return
    for pol in pols:
        open_ports: set = set()
        restricted: set = set()
        for rule in pol["spec"].get("ingress", []):
            names = {p.get("port") for p in rule.get("ports", [])}
            (restricted if rule.get("from") else open_ports).update(names or {"*"})
        if "extender" in open_ports or "*" in open_ports or ports.get("extender") in open_ports:
            fail(f"NetworkPolicy {pol['metadata']['name']}: the extender port is open to everyone")
        elif "extender" not in restricted:
            fail(f"NetworkPolicy {pol['metadata']['name']}: admits nobody to the extender port")
        elif {"s3", "admin", "link"} - open_ports:
            fail(f"NetworkPolicy {pol['metadata']['name']}: shuts out {sorted({'s3', 'admin', 'link'} - open_ports)}")
        else:
            ok(f"NetworkPolicy {pol['metadata']['name']}: extender only from {len(restricted)} port rule(s) with a source; s3, admin, link open")


# A status as controller.rs writes it (MLSysOpsAppStatus, ComponentStatus, PreferredNode;
# `error` only when set): the CRD's status schema must admit it, or the API server refuses the
# controller's status patch.
CONTROLLER_STATUS = {
    "components": [
        {"name": "trainer", "deployment": "trainer", "required": ["node-a", "node-b"],
         "preferred": [{"node": "node-a", "weight": 100}, {"node": "node-b", "weight": 40}],
         "reason": "closest to patient-scans' fastest backends"},
        {"name": "thumbnailer", "deployment": "thumbs", "required": [], "preferred": [],
         "reason": "no placement known; deployment left as it is", "error": "patching deployment thumbs: 403"},
    ]
}


def check_crd_status(objs) -> None:
    crd = find(objs, "CustomResourceDefinition", "mlsysopsapps.mlsysops.eu")
    if crd is None:
        return
    for v in crd["spec"]["versions"]:
        if "status" not in v.get("subresources", {}):
            fail(f"CRD version {v['name']}: no status subresource (the controller patches /status)")
        schema = closed(openapi_to_jsonschema(v["schema"]["openAPIV3Schema"]["properties"]["status"]))
        validator = jsonschema.Draft7Validator(schema)
        errors = list(validator.iter_errors(CONTROLLER_STATUS))
        for e in errors:
            fail(f"CRD {v['name']} status schema refuses the controller's status: {'/'.join(map(str, e.absolute_path))}: {e.message}")
        bad = {"components": 2}
        if not errors and not list(validator.iter_errors(bad)):
            fail(f"CRD {v['name']} status schema admits components: 2 (the check cannot fail)")
        elif not errors:
            ok(f"CRD {v['name']}: the status controller.rs writes is admitted, a wrong one is not")


# ---- compose ----------------------------------------------------------------------------------

def check_compose(root: Path) -> None:
    cdir = root / "deploy/compose"
    text = (cdir / "compose.yaml").read_text()
    doc = yaml.safe_load(text)
    services = doc["services"]
    # Every variable the file interpolates is in .env.example (so `cp .env.example .env` works).
    used = set(re.findall(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*)", text))
    example = {
        line.split("=", 1)[0].strip()
        for line in (cdir / ".env.example").read_text().splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    }
    if used - example:
        fail(f"compose.yaml uses {sorted(used - example)} that .env.example does not set")
    else:
        ok(f"compose.yaml: every interpolated variable is in .env.example ({len(used)})")
    for name, s in services.items():
        deps = s.get("depends_on", {})
        for d in deps if isinstance(deps, list) else deps.keys():
            if d not in services:
                fail(f"compose service {name} depends on unknown service {d}")
        for v in s.get("volumes", []):
            src = v.split(":", 1)[0]
            if src.startswith("."):
                if not (cdir / src).exists():
                    fail(f"compose service {name} mounts {src}, which does not exist")
            elif src not in (doc.get("volumes") or {}):
                fail(f"compose service {name} uses volume {src} not declared under volumes")
        for sec in s.get("secrets", []):
            sname = sec["source"] if isinstance(sec, dict) else sec
            if sname not in (doc.get("secrets") or {}):
                fail(f"compose service {name} uses undeclared secret {sname}")
        build = s.get("build")
        if build and not (cdir / build["context"] / build["dockerfile"]).is_file():
            fail(f"compose service {name}: build {build} does not name a Dockerfile")
    gw = services["gateway"]
    if gw.get("depends_on", {}).get("buckets", {}).get("condition") != "service_completed_successfully":
        fail("compose: the gateway does not wait for the buckets service to complete")
    backends, env_names = check_gateway_toml("deploy/compose/mlsysops.toml", (cdir / "mlsysops.toml").read_text())
    missing = env_names - set(gw.get("environment", {}))
    if missing:
        fail(f"compose gateway environment lacks {sorted(missing)} that mlsysops.toml names")
    bucket_cmd = " ".join(services["buckets"]["command"])
    minios = sorted(n for n in services if re.fullmatch(r"minio\d+", n))
    for b in backends:
        host = re.sub(r"^https?://([^:/]+).*$", r"\1", b.get("endpoint", ""))
        if host not in services:
            fail(f"backend {b['id']} endpoint {b.get('endpoint')} is not a compose service")
        if b.get("bucket") not in bucket_cmd:
            fail(f"backend {b['id']} bucket {b.get('bucket')} is not created by the buckets service")
        if host not in services["buckets"].get("depends_on", {}):
            fail(f"the buckets service does not wait for {host}")
    if not 4 <= len(minios) <= 6 or len(backends) != len(minios):
        fail(f"compose: {len(minios)} MinIO services for {len(backends)} backends (want 4 to 6, one each)")
    ok(f"compose: {len(minios)} MinIO services, one backend and bucket each; gateway after buckets")
    prom = yaml.safe_load((root / "deploy/prometheus/prometheus.yml").read_text())
    job = next(j for j in prom["scrape_configs"] if j["job_name"] == "mlsysops")
    target = next(s for s in services["prometheus"]["secrets"] if isinstance(s, dict))
    want = f"/run/secrets/{target['target']}"
    if job["authorization"]["credentials_file"] != want:
        fail(f"prometheus.yml reads the token from {job['authorization']['credentials_file']}, compose mounts it at {want}")
    elif job["static_configs"][0]["targets"] != ["gateway:9001"]:
        fail(f"prometheus.yml scrapes {job['static_configs'][0]['targets']}, not gateway:9001")
    else:
        ok(f"prometheus.yml scrapes gateway:9001 with the token compose mounts at {want}")


# ---- Grafana ----------------------------------------------------------------------------------

def documented_metrics(root: Path) -> tuple[set[str], set[str]]:
    """Prometheus names from docs/metrics.md's tables (with a histogram's _bucket/_sum/_count),
    and the label names (attributes with dots as underscores, plus Prometheus' own)."""
    text = (root / "docs/metrics.md").read_text()
    names: set[str] = set()
    labels = {"le", "job", "instance", "namespace", "pod"}
    for line in text.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) < 7 or not cells[1].startswith("`"):
            continue
        prom = re.findall(r"`([a-z_][a-z0-9_]*)`", cells[2])
        if prom:
            base = prom[0]
            names.add(base)
            if "histogram" in cells[3]:
                names |= {base + s for s in ("_bucket", "_sum", "_count")}
        # Attribute keys have dots (`aws.s3.bucket`); dotless words there are values.
        for attr in re.findall(r"`([a-z][a-z0-9_]*\.[a-z0-9_.]*)`", cells[5]):
            labels.add(attr.replace(".", "_"))
    return names, labels


def dashboard_exprs(root: Path) -> list[tuple[str, str]]:
    dash = json.loads((root / "deploy/grafana/dashboards/mlsysops.json").read_text())
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                out.append((p["title"], t["expr"]))
            walk(p.get("panels", []))

    walk(dash["panels"])
    return out


def substitute(expr: str) -> str:
    expr = expr.replace("$__rate_interval", "5m").replace("$__interval", "1m")
    return re.sub(r"\$\{?[a-z_]+\}?", ".*", expr)


PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "by", "without", "rate", "irate", "increase",
    "histogram_quantile", "topk", "bottomk", "on", "ignoring", "group_left", "group_right",
    "and", "or", "unless", "offset", "bool", "label_values", "abs", "clamp_min", "clamp_max",
}


def check_grafana(root: Path) -> None:
    gdir = root / "deploy/grafana"
    for f in sorted((gdir / "provisioning").rglob("*.yaml")):
        doc = yaml.safe_load(f.read_text())
        if doc.get("apiVersion") != 1:
            fail(f"{f.relative_to(root)}: apiVersion is not 1")
    dash = json.loads((gdir / "dashboards/mlsysops.json").read_text())
    prov = yaml.safe_load((gdir / "provisioning/dashboards/dashboards.yaml").read_text())
    ds = yaml.safe_load((gdir / "provisioning/datasources/prometheus.yaml").read_text())
    if prov["providers"][0]["options"]["path"] != "/var/lib/grafana/dashboards":
        fail("dashboards.yaml does not load /var/lib/grafana/dashboards (where compose mounts them)")
    ds_uids = {d["uid"] for d in ds["datasources"]}
    var_ds = [v for v in dash["templating"]["list"] if v["type"] == "datasource"]
    if not var_ds or var_ds[0]["current"]["value"] not in ds_uids:
        fail(f"dashboard's datasource variable does not default to a provisioned datasource {ds_uids}")
    names, labels = documented_metrics(root)
    exprs = dashboard_exprs(root)
    ids = [p["id"] for p in dash["panels"]]
    if len(set(ids)) != len(ids):
        fail("dashboard panel ids are not unique")
    for title, expr in exprs:
        # Metric names: identifiers followed by `{` or `[` or standing alone, minus PromQL words,
        # labels and strings.
        bare = re.sub(r'"[^"]*"', '""', expr)
        selectors = set(re.findall(r"\b([a-z_][a-z0-9_]*)\s*(?=\{|\[)", bare))
        in_braces = set(re.findall(r"[{,]\s*([a-z_][a-z0-9_]*)\s*(?:=~|!~|!=|=)", bare))
        grouping = {l.strip() for g in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", bare) for l in g.split(",") if l.strip()}
        metrics = selectors - PROMQL_WORDS - in_braces
        if not metrics:
            fail(f"panel {title!r}: expr names no metric: {expr}")
        for m in sorted(metrics - names):
            fail(f"panel {title!r}: metric {m} is not listed in docs/metrics.md")
        for l in sorted((in_braces | grouping) - labels):
            fail(f"panel {title!r}: label {l} is no documented attribute")
    for v in dash["templating"]["list"]:
        q = v.get("definition") or ""
        for m in re.findall(r"label_values\(([a-z_][a-z0-9_]*)", q):
            if m not in names:
                fail(f"variable {v['name']}: metric {m} is not listed in docs/metrics.md")
    ok(f"dashboard: {len(dash['panels'])} panels, {len(exprs)} exprs; every metric and label documented")


# ---- images -----------------------------------------------------------------------------------

IMAGE_LINE = re.compile(r"""^\s*(?:-\s*)?image:\s*["']?([^"'\s#]+)""")
FROM_LINE = re.compile(r"^\s*FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", re.IGNORECASE)
ENV_IMAGE_LINE = re.compile(r"^\s*([A-Z_]*IMAGE)=(\S*)")
VAR_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}$")


def image_problem(ref: str) -> str | None:
    """Why an image reference does not name one release (None: it does). A digest pins it; else
    the last path component needs a tag other than `latest` (no tag means `latest`)."""
    if "@sha256:" in ref:
        return None
    last = ref.rsplit("/", 1)[-1]
    if ":" not in last:
        return "no tag (pulls :latest)"
    if last.split(":", 1)[1] in ("", "latest"):
        return "tag :latest"
    return None


def scan_images(deploy: Path) -> tuple[list[str], list[str]]:
    """Every image reference in deploy/ (compose and Kubernetes `image:`, Dockerfile `FROM`,
    `*_IMAGE=` in .env.example, `${VAR:-default}` defaults): (references seen, problems)."""
    seen: list[str] = []
    problems: list[str] = []
    env: dict[str, str] = {}
    for f in sorted(deploy.rglob(".env*")):
        for line in f.read_text().splitlines():
            m = ENV_IMAGE_LINE.match(line)
            if m:
                env[m.group(1)] = m.group(2)

    def judge(where: str, ref: str) -> None:
        m = VAR_REF.match(ref)
        if m:
            var, default = m.group(1), m.group(2)
            if default is None:
                if var not in env:
                    problems.append(f"{where}: image ${{{var}}} has no default and no {var}= in .env.example")
                return
            ref = default
        seen.append(ref)
        why = image_problem(ref)
        if why:
            problems.append(f"{where}: image {ref}: {why}")

    for f in sorted(p for p in deploy.rglob("*") if p.is_file() and p.suffix != ".md"):
        rel = f.relative_to(deploy.parent)
        text = f.read_text(errors="replace")
        stages: set[str] = set()
        for n, line in enumerate(text.splitlines(), 1):
            where = f"{rel}:{n}"
            if f.name.startswith("Dockerfile"):
                m = FROM_LINE.match(line)
                if m:
                    if m.group(1).lower() not in stages and m.group(1) != "scratch":
                        judge(where, m.group(1))
                    if m.group(2):
                        stages.add(m.group(2).lower())
                continue
            m = IMAGE_LINE.match(line) or ENV_IMAGE_LINE.match(line)
            if m:
                judge(where, m.group(m.lastindex))
            elif re.search(r"[\w/.-]:latest\b", line) and not line.lstrip().startswith("#"):
                problems.append(f"{where}: :latest in {line.strip()!r}")
    return seen, problems


def image_selftest() -> None:
    """The scan must be able to fail: a synthetic deploy/ of wrong references is refused line by
    line, and pinned ones pass."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "deploy"
        (d / "compose").mkdir(parents=True)
        (d / "kubernetes").mkdir()
        (d / "compose/.env.example").write_text("A_IMAGE=minio/minio\nB_IMAGE=minio/mc:RELEASE.2025-04-16T18-13-26Z\n")
        (d / "compose/compose.yaml").write_text(
            "services:\n"
            "  a:\n    image: ${A_IMAGE:-minio/minio:latest}\n"      # bad default
            "  b:\n    image: ${B_IMAGE:-minio/mc:RELEASE.2025-04-16T18-13-26Z}\n"
            "  c:\n    image: ${C_IMAGE}\n"                          # no default, not in .env
            "  d:\n    image: 'localhost:5000/tool'\n"               # registry port, no tag
            "  e:\n    image: prom/prometheus@sha256:0123abcd\n"
            "  f:\n    command: [\"pull\", \"busybox:latest\"]\n"       # :latest anywhere
        )
        (d / "kubernetes/x.yaml").write_text(
            "spec:\n  containers:\n    - image: \"nginx:latest\"\n    - name: y\n      image: registry.k8s.io/pause:3.10\n"
        )
        (d / "Dockerfile").write_text("FROM rust:1-bookworm AS build\nFROM build AS test\nFROM debian\n")
        seen, problems = scan_images(d)
        want = ["compose/.env.example:1", "compose.yaml:3", "compose.yaml:7", "compose.yaml:9",
                "compose.yaml:13", "kubernetes/x.yaml:3", "deploy/Dockerfile:3"]
        missed = [w for w in want if not any(w in p for p in problems)]
        if missed or len(problems) != len(want):
            fail(f"image check self-test: wanted findings at {want}, got {problems}")
        else:
            pinned = [r for r in seen if image_problem(r) is None]
            ok(f"image check self-test: {len(want)} wrong references refused, {len(pinned)} pinned ones passed")


def check_images(root: Path) -> None:
    image_selftest()
    seen, problems = scan_images(root / "deploy")
    for p in problems:
        fail(p)
    if not problems:
        ok(f"deploy/: {len(seen)} image references, each pinned to a release (no :latest, no bare name)")


# ---- main -------------------------------------------------------------------------------------

def main() -> int:
    cmd, root = sys.argv[1], Path(sys.argv[2])
    if cmd == "static":
        objs = k8s_objects(root)
        print("-- kubernetes: cross-references, CRD example, scheduler configuration")
        check_k8s_refs(objs)
        check_crd_example(root, objs)
        check_crd_status(objs)
        check_scheduler_config(objs)
        print("-- compose")
        check_compose(root)
        print("-- grafana")
        check_grafana(root)
        print("-- images")
        check_images(root)
        if FAILURES:
            print(f"\n{len(FAILURES)} failed:")
            for f in FAILURES:
                print(f"  - {f}")
            return 1
        return 0
    if cmd == "promql-rules":
        rules = [
            {"record": f"dashboard:expr_{i}", "expr": substitute(e)}
            for i, (_, e) in enumerate(dashboard_exprs(root))
        ]
        Path(sys.argv[3]).write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
        return 0
    if cmd == "dashboard-exprs":
        for _, e in dashboard_exprs(root):
            print(substitute(e))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
