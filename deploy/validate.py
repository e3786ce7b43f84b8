#!/usr/bin/env python3
"""Check the Kubernetes manifests of deploy/kubernetes/ without a cluster.

Renders the base and every overlay under deploy/kubernetes/overlays/, then checks each
rendering. Prints one line per problem and exits 1, or prints what it checked and exits 0.

Rendering is a small stand-in for `kustomize build`, covering only what these
kustomizations use, and refusing any other kustomization field instead of guessing:
  - `resources`: YAML files (several documents each) and folders with a kustomization.yaml;
  - `patches` entries of the form `- path: FILE`: strategic-merge patches, applied to the
    resource of the same kind and metadata.name. Maps merge recursively, a patch's scalar
    or plain list replaces, a null deletes the key; lists of maps merge item by item on
    Kubernetes' merge key for the fields used here (containers, volumes, env by `name`,
    volumeMounts by `mountPath`, container ports by `containerPort`, Service ports by
    `port`), else on `name` when every item has one, else the patch's list replaces.
    No `$patch` directives, JSON patches, generators, namespaces, labels or name prefixes.
`--kustomize` also renders each target with `kubectl kustomize` (when kubectl is on the
PATH) and reports any resource that differs from this rendering.

Checks, on each rendering:
  - every resource against the Kubernetes OpenAPI schemas with kubernetes_validate,
    strict (unknown fields are errors), for Kubernetes 1.30 and 1.37;
  - the ServiceMonitor (a CRD: no schema there) by hand: its selector is non-empty and
    matches a Service's labels, and each endpoint's `port` is a port name of those Services;
  - every `*.toml` in a ConfigMap parses (tomllib) and its [shutdown] durations parse
    (whether the host accepts the file is the host's own parser's to say:
    tests/e2e/deploy.rs reads every shipped plugrpc.toml with it, and a user runs
    `plugrpc config check` on theirs);
  - the Deployment: terminationGracePeriodSeconds >= drain_delay + grace + 1 s of the
    plugrpc.toml it mounts; the readiness probe notices a drain (period x
    failureThreshold) within drain_delay; every probe is an httpGet on the container's
    `admin` port, which is the port `--admin` (or [host] admin_listen) listens on, with
    /healthz for liveness and startup and /readyz for readiness; every volumeMount names
    a volume; the ConfigMaps and Secrets its volumes name exist unless optional;
  - Services, the PodDisruptionBudget select the Deployment's pods, Services' targetPorts
    exist on its container, the HPA targets it and its replicas lie within the HPA's range.
It does not check that the image builds or runs, nor anything a cluster decides
(admission, quotas, CRDs installed): `kubectl apply --dry-run=server -k ...` does that.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parent / "kubernetes"
K8S_VERSIONS = ("1.30", "1.37")
KUSTOMIZATION_FIELDS = {"apiVersion", "kind", "resources", "patches"}

# Strategic merge keys of the list fields these manifests patch (Kubernetes' own).
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "topologySpreadConstraints": "topologyKey",
}

DURATION_KEYS = {("shutdown", "drain_delay"), ("shutdown", "grace")}
DEFAULT_DRAIN_DELAY = 5.0
DEFAULT_GRACE = 30.0
# After the grace, the host gives the calls it ended this long to send their status
# (LAST_TRAILERS in host/src/server/mod.rs).
LAST_TRAILERS = 1.0
DEFAULT_ADMIN_PORT = 9901

UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str) -> float:
    """Seconds in a duration as the host writes them ("250ms", "5s", "1h 30m")."""
    parts = re.findall(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*", text)
    if not parts or "".join(f"{n}{u}" for n, u in parts) != re.sub(r"\s+", "", text):
        raise ValueError(f"{text!r} is not a duration like \"5s\" or \"250ms\"")
    return sum(float(n) * UNITS[u] for n, u in parts)


# ---------------------------------------------------------------------------------------
# Rendering


class RenderError(Exception):
    pass


def load_yaml(path: Path) -> list[dict]:
    with path.open() as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def key_of(doc: dict) -> tuple[str, str]:
    return doc.get("kind", "?"), doc.get("metadata", {}).get("name", "?")


def merge(base: Any, patch: Any, field: str = "") -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            if v is None:
                out.pop(k, None)
            elif k in out:
                out[k] = merge(out[k], v, k)
            else:
                out[k] = v
        return out
    if isinstance(base, list) and isinstance(patch, list):
        items = base + patch
        if items and all(isinstance(i, dict) for i in items):
            mkey = MERGE_KEYS.get(field)
            if field == "ports":
                mkey = "containerPort" if all("containerPort" in i for i in items) else "port"
            if mkey is None and all("name" in i for i in items):
                mkey = "name"
            if mkey is not None and all(mkey in i for i in items):
                out = [dict(i) for i in base]
                for item in patch:
                    for n, old in enumerate(out):
                        if old[mkey] == item[mkey]:
                            out[n] = merge(old, item)
                            break
                    else:
                        out.append(item)
                return out
        return patch
    return patch


def render(folder: Path) -> list[dict]:
    kfile = folder / "kustomization.yaml"
    if not kfile.is_file():
        raise RenderError(f"{folder}: no kustomization.yaml")
    (kust,) = load_yaml(kfile)
    unknown = set(kust) - KUSTOMIZATION_FIELDS
    if unknown:
        raise RenderError(f"{kfile}: fields {sorted(unknown)} are beyond what validate.py "
                          "renders (resources, patches with path)")
    docs: list[dict] = []
    for res in kust.get("resources", []):
        path = (folder / res).resolve()
        docs.extend(render(path) if path.is_dir() else load_yaml(path))
    seen: set[tuple[str, str]] = set()
    for doc in docs:
        if key_of(doc) in seen:
            raise RenderError(f"{kfile}: {'/'.join(key_of(doc))} is defined twice")
        seen.add(key_of(doc))
    for entry in kust.get("patches", []):
        if set(entry) != {"path"}:
            raise RenderError(f"{kfile}: patch {entry} is not `- path: FILE`, the one form "
                              "validate.py renders")
        ppath = folder / entry["path"]
        for patch in load_yaml(ppath):
            for n, doc in enumerate(docs):
                if key_of(doc) == key_of(patch) and doc.get("apiVersion") == patch.get("apiVersion"):
                    docs[n] = merge(doc, patch)
                    break
            else:
                raise RenderError(f"{ppath}: patch targets {'/'.join(key_of(patch))}, "
                                  "which no resource is")
    return docs


def kubectl_render(folder: Path) -> list[dict]:
    out = subprocess.run(["kubectl", "kustomize", str(folder)], check=True,
                         capture_output=True, text=True).stdout
    return [d for d in yaml.safe_load_all(out) if d is not None]


# ---------------------------------------------------------------------------------------
# Checks


def labels_match(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_toml(where: str, text: str, problems: list[str]) -> dict | None:
    try:
        conf = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        problems.append(f"{where}: does not parse as TOML: {e}")
        return None

    for table, k in DURATION_KEYS:
        value = conf.get(table, {}).get(k)
        if value is not None:
            try:
                duration(value)
            except (ValueError, TypeError) as e:
                problems.append(f"{where}: {table}.{k}: {e}")
    return conf


def flag(args: list[str], name: str) -> str | None:
    for n, a in enumerate(args):
        if a == name and n + 1 < len(args):
            return args[n + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


def check_deployment(target: str, dep: dict, docs: list[dict], configs: dict[str, dict],
                     problems: list[str]) -> None:
    where = f"{target}: Deployment/{dep['metadata']['name']}"
    spec = dep.get("spec", {})
    pod = spec.get("template", {}).get("spec", {})
    pod_labels = spec.get("template", {}).get("metadata", {}).get("labels", {})
    if not labels_match(spec.get("selector", {}).get("matchLabels", {}), pod_labels):
        problems.append(f"{where}: spec.selector does not match the pod template's labels")

    by_kind: dict[str, dict[str, dict]] = {}
    for d in docs:
        by_kind.setdefault(d.get("kind"), {})[d["metadata"]["name"]] = d

    # Volumes: what they name must exist, and which plugrpc.toml the host reads.
    conf = None
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for v in volumes.values():
        sources = [v] + [s for s in v.get("projected", {}).get("sources", [])]
        for s in sources:
            for kind, ref, field in (("ConfigMap", "configMap", "name"),
                                     ("Secret", "secret", "secretName"),
                                     ("Secret", "secret", "name")):
                obj = s.get(ref)
                if not obj or field not in obj:
                    continue
                name = obj[field]
                if name not in by_kind.get(kind, {}) and not obj.get("optional", False):
                    problems.append(f"{where}: volume {v['name']} needs {kind} {name}, "
                                    "which is not in the rendering and not optional")
                if kind == "ConfigMap" and name in configs:
                    conf = configs[name]
    if conf is None:
        problems.append(f"{where}: mounts no ConfigMap holding a plugrpc.toml")
        conf = {}
    shutdown = conf.get("shutdown", {})
    try:
        drain = duration(shutdown["drain_delay"]) if "drain_delay" in shutdown else DEFAULT_DRAIN_DELAY
        grace = duration(shutdown["grace"]) if "grace" in shutdown else DEFAULT_GRACE
    except (ValueError, TypeError):
        drain, grace = DEFAULT_DRAIN_DELAY, DEFAULT_GRACE  # reported by check_toml
    tgps = pod.get("terminationGracePeriodSeconds", 30)
    if tgps < drain + grace + LAST_TRAILERS:
        problems.append(f"{where}: terminationGracePeriodSeconds {tgps} is less than "
                        f"[shutdown] drain_delay + grace + {LAST_TRAILERS:g}s = {drain:g}s + "
                        f"{grace:g}s + {LAST_TRAILERS:g}s: SIGKILL would cut calls in flight")

    containers = pod.get("containers", [])
    host = next((c for c in containers if c.get("name") == "plugrpc"), None)
    if host is None:
        problems.append(f"{where}: no container named plugrpc")
        return
    ports = {p.get("name"): p["containerPort"] for p in host.get("ports", [])}
    args = host.get("args", [])
    admin_flag = flag(args, "--admin")
    admin_conf = conf.get("host", {}).get("admin_listen")
    admin = admin_flag if admin_flag is not None else admin_conf
    if admin == "off":
        problems.append(f"{where}: the admin endpoints are off, the probes need them")
        admin_port = None
    elif admin is None:
        admin_port = DEFAULT_ADMIN_PORT
    else:
        admin_port = int(admin.rsplit(":", 1)[1])
        if admin.startswith("127.") or admin.startswith("[::1]") or admin.startswith("localhost"):
            problems.append(f"{where}: admin listens on {admin}, which the kubelet's probes "
                            "and Prometheus cannot reach")
    if "admin" not in ports:
        problems.append(f"{where}: container plugrpc has no port named admin")
    elif admin_port is not None and ports["admin"] != admin_port:
        problems.append(f"{where}: port admin is {ports['admin']} but the host's admin "
                        f"listens on {admin_port}")
    wanted = {"livenessProbe": "/healthz", "startupProbe": "/healthz",
              "readinessProbe": "/readyz"}
    for probe_name, path in wanted.items():
        probe = host.get(probe_name)
        if probe is None:
            problems.append(f"{where}: no {probe_name}")
            continue
        get = probe.get("httpGet")
        if get is None:
            problems.append(f"{where}: {probe_name} is not an httpGet on the admin port")
            continue
        port = get.get("port")
        number = ports.get(port) if isinstance(port, str) else port
        if number is None or number != ports.get("admin"):
            problems.append(f"{where}: {probe_name} port {port} is not the admin port")
        if get.get("path") != path:
            problems.append(f"{where}: {probe_name} path {get.get('path')} is not {path}")
    ready = host.get("readinessProbe", {})
    noticed = ready.get("periodSeconds", 10) * ready.get("failureThreshold", 3)
    if ready and noticed > drain:
        problems.append(f"{where}: readinessProbe takes up to {noticed}s to see a drain "
                        f"(period x failureThreshold), longer than drain_delay {drain:g}s")
    for c in containers:
        for m in c.get("volumeMounts", []):
            if m["name"] not in volumes:
                problems.append(f"{where}: container {c['name']} mounts volume "
                                f"{m['name']}, which the pod does not have")

    for svc in by_kind.get("Service", {}).values():
        swhere = f"{target}: Service/{svc['metadata']['name']}"
        if not labels_match(svc.get("spec", {}).get("selector", {}), pod_labels):
            problems.append(f"{swhere}: selector does not match the Deployment's pods")
        for p in svc.get("spec", {}).get("ports", []):
            tp = p.get("targetPort", p.get("port"))
            if (isinstance(tp, str) and tp not in ports) or \
                    (isinstance(tp, int) and tp not in ports.values()):
                problems.append(f"{swhere}: targetPort {tp} is no port of container plugrpc")
    for pdb in by_kind.get("PodDisruptionBudget", {}).values():
        if not labels_match(pdb.get("spec", {}).get("selector", {}).get("matchLabels", {}),
                            pod_labels):
            problems.append(f"{target}: PodDisruptionBudget/{pdb['metadata']['name']}: "
                            "selector does not match the Deployment's pods")
    for hpa in by_kind.get("HorizontalPodAutoscaler", {}).values():
        hspec = hpa.get("spec", {})
        ref = hspec.get("scaleTargetRef", {})
        if ref.get("kind") != "Deployment" or ref.get("name") != dep["metadata"]["name"]:
            continue
        lo, hi = hspec.get("minReplicas", 1), hspec.get("maxReplicas", 0)
        replicas = spec.get("replicas", 1)
        if not lo <= replicas <= hi:
            problems.append(f"{where}: replicas {replicas} is outside its HPA's "
                            f"{lo}..{hi}: the HPA will change it at once")


def check_service_monitor(target: str, sm: dict, docs: list[dict],
                          problems: list[str]) -> None:
    where = f"{target}: ServiceMonitor/{sm.get('metadata', {}).get('name', '?')}"
    if sm.get("apiVersion") != "monitoring.coreos.com/v1":
        problems.append(f"{where}: apiVersion is not monitoring.coreos.com/v1")
    spec = sm.get("spec", {})
    selector = spec.get("selector", {}).get("matchLabels", {})
    if not selector:
        problems.append(f"{where}: spec.selector.matchLabels is empty")
    services = [d for d in docs if d.get("kind") == "Service"
                and labels_match(selector, d.get("metadata", {}).get("labels", {}))]
    if selector and not services:
        problems.append(f"{where}: spec.selector {selector} matches no Service's labels")
    endpoints = spec.get("endpoints", [])
    if not endpoints:
        problems.append(f"{where}: spec.endpoints is empty")
    for ep in endpoints:
        port = ep.get("port")
        if not port:
            problems.append(f"{where}: an endpoint has no port name")
            continue
        for svc in services:
            names = {p.get("name") for p in svc.get("spec", {}).get("ports", [])}
            if port not in names:
                problems.append(f"{where}: endpoint port {port} is no port name of "
                                f"Service/{svc['metadata']['name']}")


def check(target: str, docs: list[dict], problems: list[str]) -> None:
    configs: dict[str, dict] = {}
    for doc in docs:
        kind, name = key_of(doc)
        if kind == "ServiceMonitor":
            check_service_monitor(target, doc, docs, problems)
            continue
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                path = ".".join(str(p) for p in e.path) or "(top)"
                problems.append(f"{target}: {kind}/{name}: k8s {version}: {path}: {e.message}")
            except kubernetes_validate.SchemaNotFoundError:
                problems.append(f"{target}: {kind}/{name}: k8s {version}: no schema for "
                                f"{doc.get('apiVersion')} {kind}")
        if kind == "ConfigMap":
            for key, text in (doc.get("data") or {}).items():
                if key.endswith(".toml"):
                    conf = check_toml(f"{target}: ConfigMap/{name}: {key}", text, problems)
                    if conf is not None and key == "plugrpc.toml":
                        configs[name] = conf
    deployments = [d for d in docs if d.get("kind") == "Deployment"]
    if not deployments:
        problems.append(f"{target}: no Deployment")
    for dep in deployments:
        check_deployment(target, dep, docs, configs, problems)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kustomize", action="store_true",
                        help="also compare each rendering with `kubectl kustomize`")
    opts = parser.parse_args()
    targets = [ROOT / "base"] + sorted(p for p in (ROOT / "overlays").iterdir() if p.is_dir())
    problems: list[str] = []
    done = []
    for folder in targets:
        target = str(folder.relative_to(ROOT.parent.parent))
        try:
            docs = render(folder)
        except (RenderError, OSError, yaml.YAMLError) as e:
            problems.append(f"{target}: cannot render: {e}")
            continue
        before = len(problems)
        check(target, docs, problems)
        if opts.kustomize:
            if shutil.which("kubectl") is None:
                problems.append(f"{target}: --kustomize: kubectl is not on the PATH")
            else:
                theirs = {key_of(d): d for d in kubectl_render(folder)}
                ours = {key_of(d): d for d in docs}
                for k in sorted(set(ours) | set(theirs)):
                    if ours.get(k) != theirs.get(k):
                        problems.append(f"{target}: {'/'.join(k)}: differs from "
                                        "`kubectl kustomize`'s rendering")
        if len(problems) == before:
            done.append(f"ok {target}: {len(docs)} resources "
                        f"({', '.join(sorted(k for k, _ in map(key_of, docs)))})")
    for line in problems:
        print(line)
    if problems:
        return 1
    for line in done:
        print(line)
    print(f"checked against Kubernetes {' and '.join(K8S_VERSIONS)} (strict), plugrpc.toml, "
          "shutdown timing, probes, selectors, ServiceMonitor"
          + (", and kubectl kustomize agrees" if opts.kustomize else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
