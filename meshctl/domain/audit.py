"""Zero-trust audit over plain objects, and the mutual-TLS promotion gate. Pure.

:func:`audit` reads PeerAuthentications, DestinationRules, AuthorizationPolicies,
VirtualServices and Rollouts (and, when given, Services, Deployments and Pods for the labels
of real pods) and returns :class:`Finding` values: the object, a rule id, a severity, what is
wrong and how to fix it. Objects of other kinds are ignored.

Which pods a policy reaches. Pods are known from Rollouts (stable and canary labels, see
:mod:`meshctl.domain.policies`), Deployments' pod templates, Pods and Services' selectors;
a selector that matches none of them stands for a pod carrying exactly its labels. A host
resolves as Istio resolves it: a short name ``orders`` in namespace ``shop`` is
``orders.shop.svc.cluster.local``; its pods are the Service's selector when the Service is
given, the Rollout's pods when a Rollout names the host, else ``app: <name>`` by convention.

The effective mTLS mode of a pod (and port) follows Istio's precedence: the oldest
workload-level PeerAuthentication selecting it (its ``portLevelMtls`` first), then the
namespace-wide one, then the mesh-wide one in the root namespace (``istio-system`` unless
told otherwise); ``UNSET`` inherits; nothing at all means PERMISSIVE.

Rules (id: severity):

- ``mtls-permissive``: medium, ``mtls-disabled``: high, a PeerAuthentication (mesh-wide,
  namespace or workload); ``port-mtls-permissive`` / ``port-mtls-disabled`` for one port.
- ``rollout-not-strict``: high, pods of a Rollout with security are not effectively STRICT.
- ``dr-tls-conflict``: high, DestinationRule TLS DISABLE or SIMPLE towards pods under
  STRICT (requests fail; the per-service case istioctl analyze and Kiali miss);
  ``dr-tls-disabled``: medium, DISABLE towards pods that accept plaintext.
- ``missing-default-deny``: high for a Rollout with security, low for a workload with ALLOW
  policies (removing them would open it).
- ``allow-all``: high, an ALLOW rule that is empty; ``wildcard-source``: medium, ``*`` in
  principals or namespaces; ``allow-any-source``: low, an ALLOW rule without ``from``.
- ``identity-on-plaintext``: an ALLOW rule on principals or namespaces for pods or ports that
  are DISABLE (high: it never matches) or PERMISSIVE (medium: plaintext carries no identity).
- ``deny-bypassed-by-plaintext``: a DENY rule matching principals or namespaces positively;
  plaintext requests carry neither and pass (high where plaintext is accepted, low under
  STRICT).
- ``selector-misses-track``: high, a policy selects only the stable or only the canary pods of
  a Rollout; medium, a selector on a track or version label.
- ``unknown-subset``: high, a VirtualService routes to a subset no DestinationRule defines.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from meshctl.domain.keys import TRACK
from meshctl.domain.measurements import Error, Measurement, NoData, Value
from meshctl.domain.policies import APP_LABEL, pod_labels
from meshctl.domain.spec import Rollout

Obj = Mapping[str, Any]
Labels = Mapping[str, str]
ROOT_NAMESPACE = "istio-system"
CLUSTER_SUFFIX = ".svc.cluster.local"
WEAK_MODES = ("PERMISSIVE", "DISABLE")
VERSION_KEYS = (TRACK, "version", "app.kubernetes.io/version", "pod-template-hash")


class Severity(str, Enum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"

    @property
    def rank(self) -> int:
        return list(Severity).index(self)

    def at_least(self, other: Severity) -> bool:
        return self.rank >= other.rank


class Scope(str, Enum):
    """What a finding is about: the whole mesh, a namespace, the pods its selector matches,
    or the services named in ``hosts``."""

    MESH = "mesh"
    NAMESPACE = "namespace"
    WORKLOAD = "workload"
    HOST = "host"


@dataclass(frozen=True)
class Finding:
    kind: str
    namespace: str
    name: str
    rule: str
    severity: Severity
    message: str
    fix: str
    scope: Scope = Scope.WORKLOAD
    selector: tuple[tuple[str, str], ...] = ()
    hosts: tuple[str, ...] = ()

    @property
    def object(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"

    def as_dict(self) -> dict[str, Any]:
        return {"object": {"kind": self.kind, "namespace": self.namespace, "name": self.name},
                "rule": self.rule, "severity": self.severity.value, "message": self.message,
                "fix": self.fix}


# --- reading plain objects ---------------------------------------------------------------


def _d(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _l(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _ns(obj: Obj) -> str:
    return str(_d(obj.get("metadata")).get("namespace") or "default")


def _name(obj: Obj) -> str:
    return str(_d(obj.get("metadata")).get("name") or "")


def _selector(obj: Obj) -> dict[str, str]:
    labels = _d(_d(_d(obj.get("spec")).get("selector")).get("matchLabels"))
    return {str(k): str(v) for k, v in labels.items()}


def selects(selector: Labels, labels: Labels) -> bool:
    """A label selector matches pods carrying all its labels; an empty one matches all."""
    return all(labels.get(k) == v for k, v in selector.items())


def _oldest_first(objects: Iterable[Obj]) -> list[Obj]:
    """Istio's tie-break between policies of one level: the oldest wins, then by name."""
    return sorted(objects, key=lambda o: (str(_d(o.get("metadata")).get("creationTimestamp")
                                              or ""), _name(o)))


def fqdn(host: str, namespace: str) -> str:
    """``orders`` in ``shop`` -> ``orders.shop.svc.cluster.local``; ``orders.shop.svc`` gets
    the cluster suffix; any other name with dots is already qualified."""
    if "." not in host and host != "*":
        return f"{host}.{namespace}{CLUSTER_SUFFIX}"
    return host + ".cluster.local" if host.endswith(".svc") else host


def _service_of(name: str) -> tuple[str, str] | None:
    """(namespace, service) of an in-cluster FQDN, else None."""
    parts = name.split(".")
    if name.endswith(CLUSTER_SUFFIX) and len(parts) == 5 and "*" not in name:
        return parts[1], parts[0]
    return None


def _host_matches(pattern: str, name: str) -> bool:
    return pattern == "*" or (pattern.startswith("*") and name.endswith(pattern[1:])) \
        or pattern == name


# --- the inventory -----------------------------------------------------------------------


@dataclass(frozen=True)
class AuditedRollout:
    """What the audit needs of a Rollout, from a typed Rollout or a plain dict."""

    name: str
    namespace: str
    secured: bool
    stable: dict[str, str]
    canary: dict[str, str]
    service: str
    stable_service: str | None = None
    canary_service: str | None = None

    @property
    def fqdns(self) -> tuple[str, ...]:
        hosts = (self.service, self.stable_service, self.canary_service)
        return tuple(fqdn(h, self.namespace) for h in hosts if h)

    def pods_of(self, service: str) -> list[dict[str, str]]:
        if service == self.stable_service and service != self.service:
            return [self.stable]
        if service == self.canary_service and service != self.service:
            return [self.canary]
        return [self.stable, self.canary]


def audited(rollout: Rollout) -> AuditedRollout:
    routing = rollout.spec.traffic_routing
    istio = routing.istio if routing is not None else None
    template = _d(_d(rollout.spec.template).get("metadata")).get("labels")
    canary = {**pod_labels(rollout, "stable"), **_d(template), TRACK: "canary"}
    return AuditedRollout(rollout.name, rollout.namespace, rollout.spec.security is not None,
                       pod_labels(rollout, "stable"), canary, rollout.spec.service,
                       istio.stable_service if istio else None,
                       istio.canary_service if istio else None)


def _audited_dict(obj: Obj, templates: Mapping[tuple[str, str], dict[str, str]]) -> AuditedRollout:
    spec, ns = _d(obj.get("spec")), _ns(obj)
    service = str(spec.get("service") or _name(obj))
    workload = str(_d(spec.get("workloadRef")).get("name") or service)
    istio = _d(_d(spec.get("trafficRouting")).get("istio"))
    stable = templates.get((ns, workload)) or {APP_LABEL: workload}
    canary = templates.get((ns, f"{workload}-canary")) or {
        **stable, **_d(_d(_d(spec.get("template")).get("metadata")).get("labels"))}
    return AuditedRollout(_name(obj), ns, isinstance(spec.get("security"), dict),
                       {**stable, TRACK: "stable"}, {**canary, TRACK: "canary"},
                       service, istio.get("stableService"), istio.get("canaryService"))


@dataclass
class Inventory:
    root: str
    peer_authentications: list[Obj] = field(default_factory=list)
    authorization_policies: list[Obj] = field(default_factory=list)
    destination_rules: list[Obj] = field(default_factory=list)
    virtual_services: list[Obj] = field(default_factory=list)
    rollouts: list[AuditedRollout] = field(default_factory=list)
    services: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    pods: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def workloads(self, namespace: str) -> list[dict[str, str]]:
        """Label sets of the pods known in a namespace."""
        known = [p for ns, p in self.pods if ns == namespace]
        for r in self.rollouts:
            known += [r.stable, r.canary] if r.namespace == namespace else []
        known += [s for (ns, _), s in self.services.items() if ns == namespace]
        unique: list[dict[str, str]] = []
        for labels in known:
            if labels not in unique:
                unique.append(labels)
        return unique

    def selected_pods(self, namespace: str, selector: Labels) -> list[dict[str, str]]:
        known = [w for w in self.workloads(namespace) if selects(selector, w)]
        return known or [dict(selector)]

    def service_pods(self, namespace: str, service: str) -> list[dict[str, str]]:
        if (namespace, service) in self.services:
            return [self.services[(namespace, service)]]
        for r in self.rollouts:
            if r.namespace == namespace and service in (r.service, r.stable_service,
                                                        r.canary_service):
                return r.pods_of(service)
        return [{APP_LABEL: service}]

    def known_services(self) -> set[tuple[str, str]]:
        found = set(self.services)
        for r in self.rollouts:
            found |= {s for s in map(_service_of, r.fqdns) if s}
        for obj in self.destination_rules:
            service = _service_of(fqdn(str(_d(obj.get("spec")).get("host", "")), _ns(obj)))
            found |= {service} if service else set()
        return found


def inventory(objects: Iterable[Obj], rollouts: Iterable[Rollout] = (),
              root_namespace: str = ROOT_NAMESPACE) -> Inventory:
    inv = Inventory(root_namespace)
    lists = {"PeerAuthentication": inv.peer_authentications,
             "AuthorizationPolicy": inv.authorization_policies,
             "DestinationRule": inv.destination_rules, "VirtualService": inv.virtual_services}
    objects = [o for o in objects if isinstance(o, Mapping)]
    templates: dict[tuple[str, str], dict[str, str]] = {}
    for obj in objects:
        kind, key = obj.get("kind"), (_ns(obj), _name(obj))
        if kind in lists:
            lists[str(kind)].append(obj)
        elif kind == "Service":
            inv.services[key] = {str(k): str(v) for k, v in
                                 _d(_d(obj.get("spec")).get("selector")).items()}
        elif kind == "Deployment":
            labels = _d(_d(_d(_d(obj.get("spec")).get("template")).get("metadata")).get("labels"))
            templates[key] = {str(k): str(v) for k, v in labels.items()}
            inv.pods.append((key[0], templates[key]))
        elif kind == "Pod":
            inv.pods.append((key[0], {str(k): str(v) for k, v in
                                      _d(_d(obj.get("metadata")).get("labels")).items()}))
    typed = [audited(r) for r in rollouts]
    seen = {(r.namespace, r.name) for r in typed}
    inv.rollouts = typed + [_audited_dict(o, templates) for o in objects
                            if o.get("kind") == "Rollout" and (_ns(o), _name(o)) not in seen]
    return inv


# --- effective mutual TLS ----------------------------------------------------------------


def _mode(setting: Any) -> str | None:
    mode = _d(setting).get("mode")
    return str(mode) if mode and mode != "UNSET" else None


def effective_mode(inv: Inventory, namespace: str, labels: Labels,
                   port: int | None = None) -> tuple[str, Obj | None]:
    """The mTLS mode a pod (and port) accepts, and the PeerAuthentication that decides it."""
    workload = [pa for pa in inv.peer_authentications if _ns(pa) == namespace
                and _selector(pa) and selects(_selector(pa), labels)]
    for pa in _oldest_first(workload)[:1]:
        ports = _d(_d(pa.get("spec")).get("portLevelMtls"))
        mode = (_mode(ports.get(str(port))) if port is not None else None) \
            or _mode(_d(pa.get("spec")).get("mtls"))
        if mode:
            return mode, pa
    for level in (namespace, inv.root):
        wide = [pa for pa in inv.peer_authentications if _ns(pa) == level and not _selector(pa)]
        for pa in _oldest_first(wide)[:1]:
            mode = _mode(_d(pa.get("spec")).get("mtls"))
            if mode:
                return mode, pa
    return "PERMISSIVE", None


def _finding(obj: Obj, rule: str, severity: Severity, message: str, fix: str,
             scope: Scope = Scope.WORKLOAD, selector: Labels | None = None,
             hosts: Iterable[str] = ()) -> Finding:
    chosen = _selector(obj) if selector is None else selector
    return Finding(str(obj.get("kind", "")), _ns(obj), _name(obj), rule, severity, message, fix,
                   scope, tuple(sorted(chosen.items())), tuple(hosts))


def _scope_of(inv: Inventory, obj: Obj) -> Scope:
    if _selector(obj):
        return Scope.WORKLOAD
    return Scope.MESH if _ns(obj) == inv.root else Scope.NAMESPACE


def _where(inv: Inventory, obj: Obj) -> str:
    scope = _scope_of(inv, obj)
    if scope is Scope.MESH:
        return "mesh-wide"
    if scope is Scope.NAMESPACE:
        return f"namespace-wide in {_ns(obj)}"
    return f"for pods {_labels_text(_selector(obj))}"


def _labels_text(labels: Labels) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "(all)"


def _object_text(obj: Obj | None) -> str:
    if obj is None:
        return "no PeerAuthentication applies"
    return f"{obj.get('kind')} {_ns(obj)}/{_name(obj)}"


# --- rules -------------------------------------------------------------------------------

_MODE_TEXT = {"PERMISSIVE": ("permissive", Severity.MEDIUM, "accepts plaintext as well as mTLS"),
              "DISABLE": ("disabled", Severity.HIGH, "accepts plaintext only; no peer identity")}
_STRICT_FIX = ("set mtls.mode: STRICT once every client has a sidecar (istioctl x describe "
               "pod shows the clients); meshctl's PeerAuthentication does this per workload")


def _peer_authentication_modes(inv: Inventory) -> Iterator[Finding]:
    for pa in inv.peer_authentications:
        spec = _d(pa.get("spec"))
        mode = _mode(spec.get("mtls"))
        if mode in _MODE_TEXT:
            slug, severity, text = _MODE_TEXT[mode]
            yield _finding(pa, f"mtls-{slug}", severity, f"{mode} {_where(inv, pa)}: {text}",
                           _STRICT_FIX, _scope_of(inv, pa))
        for port, setting in sorted(_d(spec.get("portLevelMtls")).items()):
            port_mode = _mode(setting)
            if port_mode in _MODE_TEXT:
                slug, severity, text = _MODE_TEXT[port_mode]
                yield _finding(pa, f"port-mtls-{slug}", severity,
                               f"port {port} is {port_mode} {_where(inv, pa)}: {text}",
                               f"remove portLevelMtls[{port}] or set it to STRICT")


def _rollout_object(r: AuditedRollout) -> dict[str, Any]:
    return {"kind": "Rollout", "metadata": {"name": r.name, "namespace": r.namespace}}


def _weak_places(inv: Inventory, r: AuditedRollout) -> list[str]:
    places = []
    for track, labels in (("stable", r.stable), ("canary", r.canary)):
        mode, winner = effective_mode(inv, r.namespace, labels)
        if mode != "STRICT":
            places.append(f"{track} pods are {mode} ({_object_text(winner)})")
        if winner is not None and _selector(winner):
            for port in sorted(_d(_d(winner.get("spec")).get("portLevelMtls"))):
                port_mode, _ = effective_mode(inv, r.namespace, labels, int(port))
                if port_mode != "STRICT":
                    places.append(f"{track} pods' port {port} is {port_mode}")
    return places


def _rollouts_not_strict(inv: Inventory) -> Iterator[Finding]:
    for r in (r for r in inv.rollouts if r.secured):
        places = _weak_places(inv, r)
        if places:
            yield _finding(_rollout_object(r), "rollout-not-strict", Severity.HIGH,
                           "accepts plaintext although its security asks for STRICT: "
                           + "; ".join(places),
                           "remove or tighten the policy named; meshctl's own is "
                           f"{r.name}-meshctl-mtls (run meshctl policy apply)",
                           selector={APP_LABEL: r.stable.get(APP_LABEL, r.name)})


def _tls_settings(dr: Obj) -> Iterator[tuple[str, str, dict[str, str], int | None]]:
    """(path, mode, subset labels, port) of every TLS setting of a DestinationRule."""
    spec = _d(dr.get("spec"))
    policies: list[tuple[str, Any, dict[str, str]]] = [("spec.trafficPolicy",
                                                        spec.get("trafficPolicy"), {})]
    for i, subset in enumerate(_l(spec.get("subsets"))):
        labels = {str(k): str(v) for k, v in _d(_d(subset).get("labels")).items()}
        policies.append((f"spec.subsets[{i}].trafficPolicy", _d(subset).get("trafficPolicy"),
                         labels))
    for path, policy, labels in policies:
        mode = _mode(_d(policy).get("tls"))
        if mode:
            yield f"{path}.tls", mode, labels, None
        for j, setting in enumerate(_l(_d(policy).get("portLevelSettings"))):
            number = _d(_d(setting).get("port")).get("number")
            port = int(number) if isinstance(number, int) else None
            mode = _mode(_d(setting).get("tls"))
            if mode:
                yield f"{path}.portLevelSettings[{j}].tls", mode, labels, port


def _target_services(inv: Inventory, dr: Obj) -> list[tuple[str, str]]:
    host = fqdn(str(_d(dr.get("spec")).get("host", "")), _ns(dr))
    if "*" not in host:
        service = _service_of(host)
        return [service] if service else []
    return sorted(s for s in inv.known_services()
                  if _host_matches(host, f"{s[1]}.{s[0]}{CLUSTER_SUFFIX}"))


def _pods_behind(inv: Inventory, namespace: str, service: str,
                 subset: Labels) -> list[dict[str, str]]:
    pods = inv.service_pods(namespace, service)
    matching = [p for p in pods if selects(subset, p)]
    return matching or [{**pods[0], **subset}]


def _dr_conflicts(inv: Inventory) -> Iterator[Finding]:
    for dr in inv.destination_rules:
        for path, mode, subset, port in _tls_settings(dr):
            if mode not in ("DISABLE", "SIMPLE"):
                continue
            strict: list[str] = []
            plain: list[str] = []
            for ns, service in _target_services(inv, dr):
                modes = {effective_mode(inv, ns, p, port)[0]
                         for p in _pods_behind(inv, ns, service, subset)}
                target = f"{service}.{ns}{CLUSTER_SUFFIX}"
                (strict if "STRICT" in modes else plain).append(target)
            if strict:
                yield _finding(dr, "dr-tls-conflict", Severity.HIGH,
                               f"{path} is {mode} but {', '.join(strict)} requires mutual TLS "
                               "(STRICT): requests fail", "set the mode to ISTIO_MUTUAL (or "
                               "remove tls: Istio's auto mTLS then applies)", Scope.HOST, {},
                               strict)
            elif plain and mode == "DISABLE":
                yield _finding(dr, "dr-tls-disabled", Severity.MEDIUM,
                               f"{path} is DISABLE: requests to {', '.join(plain)} travel in "
                               "plaintext", "set the mode to ISTIO_MUTUAL", Scope.HOST, {}, plain)


def _is_allow_nothing(ap: Obj) -> bool:
    spec = _d(ap.get("spec"))
    action = spec.get("action") or "ALLOW"
    rules = _l(spec.get("rules"))
    if action == "ALLOW":
        return not rules and not spec.get("provider")
    return action == "DENY" and any(rule == {} for rule in rules)


def _applies(inv: Inventory, ap: Obj, namespace: str, labels: Labels) -> bool:
    if _d(ap.get("spec")).get("targetRef") or _d(ap.get("spec")).get("targetRefs"):
        return False
    if _ns(ap) == namespace:
        return selects(_selector(ap), labels)
    return _ns(ap) == inv.root and not _selector(ap)


def _has_default_deny(inv: Inventory, namespace: str, labels: Labels) -> bool:
    return any(_is_allow_nothing(ap) and _applies(inv, ap, namespace, labels)
               for ap in inv.authorization_policies)


def _missing_default_deny(inv: Inventory) -> Iterator[Finding]:
    secured_pods = []
    for r in (r for r in inv.rollouts if r.secured):
        secured_pods += [(r.namespace, r.stable), (r.namespace, r.canary)]
        missing = [t for t, p in (("stable", r.stable), ("canary", r.canary))
                   if not _has_default_deny(inv, r.namespace, p)]
        if missing:
            yield _finding(_rollout_object(r), "missing-default-deny", Severity.HIGH,
                           f"no default-deny AuthorizationPolicy covers the {' and '.join(missing)}"
                           " pods: any caller not denied elsewhere is allowed",
                           f"run meshctl policy apply (creates {r.name}-meshctl-deny-all)",
                           selector={APP_LABEL: r.stable.get(APP_LABEL, r.name)})
    for ap in inv.authorization_policies:
        if _is_allow_nothing(ap) or (_d(ap.get("spec")).get("action") or "ALLOW") != "ALLOW":
            continue
        pods = [p for p in inv.selected_pods(_ns(ap), _selector(ap))
                if (_ns(ap), p) not in secured_pods
                and not _has_default_deny(inv, _ns(ap), p)]
        if pods:
            yield _finding(ap, "missing-default-deny", Severity.LOW,
                           f"pods {_labels_text(pods[0])} have ALLOW policies but no default-deny:"
                           " removing this policy would open them to every caller",
                           "add an AuthorizationPolicy with only a selector (allow-nothing)",
                           _scope_of(inv, ap))


def _rules(ap: Obj) -> list[dict[str, Any]]:
    return [_d(r) for r in _l(_d(ap.get("spec")).get("rules"))]


def _action(ap: Obj) -> str:
    return str(_d(ap.get("spec")).get("action") or "ALLOW")


def _sources(rule: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [_d(_d(f).get("source")) for f in _l(rule.get("from"))]


def _wildcards(inv: Inventory) -> Iterator[Finding]:
    for ap in (ap for ap in inv.authorization_policies if _action(ap) == "ALLOW"):
        for i, rule in enumerate(_rules(ap)):
            where = f"rules[{i}]"
            if not rule:
                yield _finding(ap, "allow-all", Severity.HIGH,
                               f"{where} is empty: it allows every request from anyone",
                               "name the callers in from.source.principals", _scope_of(inv, ap))
            elif not rule.get("from"):
                yield _finding(ap, "allow-any-source", Severity.LOW,
                               f"{where} has no from: any caller, even without identity, may "
                               "make these requests", "add from.source.principals",
                               _scope_of(inv, ap))
            for source in _sources(rule):
                for key in ("principals", "namespaces"):
                    if "*" in _l(source.get(key)):
                        yield _finding(ap, "wildcard-source", Severity.MEDIUM,
                                       f"{where} allows {key} '*': any workload of the mesh",
                                       f"list the callers' {key} instead of '*'",
                                       _scope_of(inv, ap))


def _identities(rule: Mapping[str, Any]) -> bool:
    return any(_l(s.get("principals")) or _l(s.get("namespaces")) for s in _sources(rule))


def _rule_ports(rule: Mapping[str, Any]) -> list[int | None]:
    ports = [p for to in _l(rule.get("to")) for p in
             _l(_d(_d(to).get("operation")).get("ports"))]
    numbers: list[int | None] = [int(p) for p in ports if str(p).isdigit()]
    return numbers or [None]


def _weakest(inv: Inventory, ap: Obj, rule: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
    """The weakest effective mode among the pods and ports a rule reaches, and those pods."""
    order = ["STRICT", "PERMISSIVE", "DISABLE"]
    worst, where = "STRICT", {}
    for labels in inv.selected_pods(_ns(ap), _selector(ap)):
        for port in _rule_ports(rule):
            mode, _ = effective_mode(inv, _ns(ap), labels, port)
            if mode in order and order.index(mode) > order.index(worst):
                worst, where = mode, labels
    return worst, where


def _identity_rules(inv: Inventory) -> Iterator[Finding]:
    for ap in inv.authorization_policies:
        action = _action(ap)
        for i, rule in enumerate(_rules(ap)):
            if action not in ("ALLOW", "DENY") or not _identities(rule):
                continue
            mode, pods = _weakest(inv, ap, rule)
            if action == "DENY":
                severity = Severity.LOW if mode == "STRICT" else Severity.HIGH
                yield _finding(ap, "deny-bypassed-by-plaintext", severity,
                               f"rules[{i}] denies by principals/namespaces; plaintext requests "
                               f"carry neither and pass (pods {_labels_text(pods)} are {mode})",
                               "match the complement: notPrincipals/notNamespaces of the "
                               "callers to keep", selector=pods)
            elif mode != "STRICT":
                severity = Severity.HIGH if mode == "DISABLE" else Severity.MEDIUM
                effect = "it never matches" if mode == "DISABLE" else \
                    "plaintext callers carry no identity"
                yield _finding(ap, "identity-on-plaintext", severity,
                               f"rules[{i}] matches principals/namespaces but pods "
                               f"{_labels_text(pods)} accept {mode} traffic: {effect}",
                               "make the pods STRICT (PeerAuthentication)", selector=pods)


def _selector_tracks(inv: Inventory) -> Iterator[Finding]:
    for obj in [*inv.peer_authentications, *inv.authorization_policies]:
        selector = _selector(obj)
        if not selector:
            continue
        matched = False
        for r in (r for r in inv.rollouts if r.namespace == _ns(obj)):
            stable, canary = selects(selector, r.stable), selects(selector, r.canary)
            matched = matched or stable or canary
            if stable != canary:
                only, other = ("stable", "canary") if stable else ("canary", "stable")
                yield _finding(obj, "selector-misses-track", Severity.HIGH,
                               f"selects only the {only} pods of Rollout {r.name}: the {other} "
                               "pods escape it", "select on the labels both tracks carry, "
                               f"e.g. {APP_LABEL}: {r.stable.get(APP_LABEL, r.name)}")
        keys = sorted(set(selector) & set(VERSION_KEYS))
        if keys and not matched:
            yield _finding(obj, "selector-misses-track", Severity.MEDIUM,
                           f"selects on {', '.join(keys)}: a canary or the next version does "
                           "not carry the same value", "select on the app label instead")


def _destinations(vs: Obj) -> Iterator[tuple[str, dict[str, Any]]]:
    spec = _d(vs.get("spec"))
    for kind in ("http", "tcp", "tls"):
        for i, route in enumerate(_l(spec.get(kind))):
            for j, item in enumerate(_l(_d(route).get("route"))):
                yield f"spec.{kind}[{i}].route[{j}]", _d(_d(item).get("destination"))
            if kind == "http" and _d(route).get("mirror"):
                yield f"spec.http[{i}].mirror", _d(_d(route).get("mirror"))
            for j, item in enumerate(_l(_d(route).get("mirrors"))):
                yield f"spec.http[{i}].mirrors[{j}]", _d(_d(item).get("destination"))


def _subsets_for(inv: Inventory, namespace: str, host: str) -> set[str] | None:
    """Subsets the DestinationRules visible from ``namespace`` define for ``host``."""
    service = _service_of(host)
    visible = {namespace, inv.root, service[0] if service else namespace}
    rules = [dr for dr in inv.destination_rules if _ns(dr) in visible
             and _host_matches(fqdn(str(_d(dr.get("spec")).get("host", "")), _ns(dr)), host)]
    if not rules:
        return None
    return {str(_d(s).get("name")) for dr in rules
            for s in _l(_d(dr.get("spec")).get("subsets"))}


def _unknown_subsets(inv: Inventory) -> Iterator[Finding]:
    for vs in inv.virtual_services:
        for path, destination in _destinations(vs):
            subset = destination.get("subset")
            if not subset:
                continue
            host = fqdn(str(destination.get("host", "")), _ns(vs))
            subsets = _subsets_for(inv, _ns(vs), host)
            if subsets is None or subset not in subsets:
                has = "no DestinationRule for the host" if subsets is None else \
                    f"its DestinationRule has {', '.join(sorted(subsets)) or 'no subsets'}"
                yield _finding(vs, "unknown-subset", Severity.HIGH,
                               f"{path} routes to subset {subset!r} of {host}, but {has}: "
                               "those requests fail (503)", "add the subset to the "
                               "DestinationRule before routing to it", Scope.HOST, {}, (host,))


RULES = (_peer_authentication_modes, _rollouts_not_strict, _dr_conflicts, _missing_default_deny,
         _wildcards, _identity_rules, _selector_tracks, _unknown_subsets)


def audit(objects: Iterable[Obj], rollouts: Iterable[Rollout] = (),
          root_namespace: str = ROOT_NAMESPACE) -> list[Finding]:
    """Every finding, most severe first. ``rollouts``: typed Rollouts to audit with the
    objects (a Rollout given both ways counts once, typed)."""
    inv = inventory(objects, rollouts, root_namespace)
    found = {f for rule in RULES for f in rule(inv)}
    return sorted(found, key=lambda f: (-f.severity.rank, f.namespace, f.kind, f.name, f.rule,
                                        f.message))


def at_or_above(findings: Iterable[Finding], severity: Severity) -> list[Finding]:
    return [f for f in findings if f.severity.at_least(severity)]


# --- the gate ----------------------------------------------------------------------------

# Mesh- and namespace-wide mode findings reach a Rollout's pods only when no workload policy
# overrides them; ``rollout-not-strict`` reports the mode its pods really get.
_SHADOWED = {"mtls-permissive", "mtls-disabled"}


def concerns(finding: Finding, rollout: AuditedRollout) -> bool:
    """Whether a finding is about the Rollout's service or its stable or canary pods."""
    if finding.kind == "Rollout":
        return (finding.namespace, finding.name) == (rollout.namespace, rollout.name)
    if finding.rule in _SHADOWED and finding.scope in (Scope.MESH, Scope.NAMESPACE):
        return False
    if finding.scope is Scope.HOST:
        return any(h in rollout.fqdns for h in finding.hosts)
    if finding.scope is Scope.MESH:
        return True
    if finding.namespace != rollout.namespace:
        return False
    selector = dict(finding.selector)
    return finding.scope is Scope.NAMESPACE or selects(selector, rollout.stable) \
        or selects(selector, rollout.canary)


def findings_for(findings: Iterable[Finding], rollout: Rollout) -> list[Finding]:
    view = audited(rollout)
    return [f for f in findings if concerns(f, view)]


_EPSILON = 1e-9


def mtls_gate(findings_for_service: Iterable[Finding], canary_mtls_share: Measurement,
              opens_without_traffic: bool = False) -> tuple[bool, str]:
    """Whether a step may advance under ``requireMutualTLS``: (open, reason).

    Closed by any high-severity finding about the service, by a measurement error, and by a
    share of mutual-TLS canary requests below 1.0. No data (no canary request in the
    window) proves nothing, so it keeps the gate closed unless the Rollout says
    ``security.mtlsGateOpensWithoutTraffic: true`` (a preview nobody calls yet).

        ([], Value(1.0))  -> (True, "all canary traffic is mutual TLS")
        ([], Value(0.97)) -> (False, "3.00% of canary requests are not mutual TLS")
    """
    blocking = [f for f in findings_for_service if f.severity is Severity.HIGH]
    if blocking:
        first = blocking[0]
        more = f" (and {len(blocking) - 1} more)" if len(blocking) > 1 else ""
        return False, f"{first.rule} on {first.object}: {first.message}{more}"
    if isinstance(canary_mtls_share, Error):
        return False, f"mTLS share of canary traffic unknown: {canary_mtls_share.message}"
    if isinstance(canary_mtls_share, NoData):
        reason = f"no canary traffic to check ({canary_mtls_share.reason})"
        if opens_without_traffic:
            return True, reason
        return False, (f"{reason}; send traffic, or set security.mtlsGateOpensWithoutTraffic: "
                       "true to let steps without traffic advance")
    assert isinstance(canary_mtls_share, Value)
    if canary_mtls_share.value < 1.0 - _EPSILON:
        plain = (1.0 - canary_mtls_share.value) * 100
        return False, f"{plain:.2f}% of canary requests are not mutual TLS"
    return True, "all canary traffic is mutual TLS"
