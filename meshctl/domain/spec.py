"""The Rollout and AnalysisTemplate resources (``meshctl.io/v1alpha1``) as frozen values.

Field names are the CRD's. The CRD schema in ``manifests/crds`` is generated from these
classes (``meshctl.domain.crds``); structural checks come from the same metadata
(:mod:`meshctl.domain.fields`); rules across fields are in :mod:`meshctl.domain.validation`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from meshctl.domain.durations import WHOLE_PATTERN, Duration
from meshctl.domain.fields import field
from meshctl.domain.judge import Baseline, Direction
from meshctl.domain.names import DNS_LABEL, DNS_SUBDOMAIN, LABEL_MAX, SUBDOMAIN_MAX
from meshctl.domain.notifications import NotificationSink
from meshctl.domain.providers import ProviderKind
from meshctl.domain.release_gates import GateSpec
from meshctl.domain.routers import TrafficRouting
from meshctl.domain.routers.istio import DestinationRuleRef, IstioRouting, VirtualServiceRef

# spec.trafficRouting has one section per traffic backend: they live with the backends, in
# meshctl.domain.routers, and are importable from here as before
__all__ = ["DNS_LABEL", "DNS_SUBDOMAIN", "LABEL_MAX", "SUBDOMAIN_MAX", "DestinationRuleRef",
           "IstioRouting", "TrafficRouting", "VirtualServiceRef"]

GROUP = "meshctl.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"


# --- shared pieces -------------------------------------------------------------------------


@dataclass(frozen=True)
class TemplateRef:
    """An AnalysisTemplate in the Rollout's namespace, or a built-in SLO template."""

    template_name: str = field("templateName", required=True)


@dataclass(frozen=True)
class Arg:
    """A value passed to an AnalysisTemplate argument; escaped before it enters a query."""

    name: str = field("name", required=True)
    value: str | None = field("value")


@dataclass(frozen=True)
class AnalysisRef:
    """Which analysis to run: AnalysisTemplates with arguments; none means the Rollout's SLO."""

    templates: tuple[TemplateRef, ...] = field("templates", default=())
    args: tuple[Arg, ...] = field("args", default=())


@dataclass(frozen=True)
class BackgroundAnalysis:
    """Analysis that runs from ``startingStep`` to the end of the rollout; failing aborts."""

    templates: tuple[TemplateRef, ...] = field("templates", default=())
    args: tuple[Arg, ...] = field("args", default=())
    starting_step: int = field("startingStep", default=0, minimum=0)


@dataclass(frozen=True)
class StringMatch:
    """Exactly one of exact, prefix, regex."""

    exact: str | None = field("exact")
    prefix: str | None = field("prefix")
    regex: str | None = field("regex")

    __schema_extra__ = {"minProperties": 1, "maxProperties": 1}


@dataclass(frozen=True)
class HeaderMatchSpec:
    header_name: str = field("headerName", required=True, doc="HTTP header name, lower case.")
    header_value: StringMatch = field("headerValue", required=True)


@dataclass(frozen=True)
class HeaderRouteSpec:
    """A route that sends requests matching every header to the new version."""

    name: str = field("name", required=True, pattern=DNS_LABEL)
    match: tuple[HeaderMatchSpec, ...] = field(
        "match", default=(), doc="Leave empty to remove the named route."
    )


# --- canary ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PauseSpec:
    duration: Duration | None = field("duration", doc="No duration: wait for promote.")


@dataclass(frozen=True)
class MirrorSpec:
    percent: int = field("percent", required=True, minimum=0, maximum=100)


@dataclass(frozen=True)
class Step:
    """One canary step; exactly one key."""

    set_weight: int | None = field("setWeight", minimum=0, maximum=100)
    pause: PauseSpec | None = field("pause")
    analysis: AnalysisRef | None = field("analysis")
    set_header_route: HeaderRouteSpec | None = field("setHeaderRoute")
    set_mirror: MirrorSpec | None = field("setMirror")

    __schema_extra__ = {"minProperties": 1, "maxProperties": 1}

    @property
    def kind(self) -> str:
        for name in ("set_weight", "pause", "analysis", "set_header_route", "set_mirror"):
            if getattr(self, name) is not None:
                return {"set_weight": "setWeight", "set_header_route": "setHeaderRoute",
                        "set_mirror": "setMirror"}.get(name, name)
        return "empty"


@dataclass(frozen=True)
class CanaryStrategy:
    steps: tuple[Step, ...] = field(
        "steps", required=True, min_items=1,
        hint="give at least one step, e.g. [{setWeight: 20}]; to switch all at once use "
             "blueGreen with autoPromotionSeconds: 0",
    )
    analysis: BackgroundAnalysis | None = field("analysis")


# --- blue-green --------------------------------------------------------------------------


@dataclass(frozen=True)
class BlueGreenStrategy:
    """Blue-green over VirtualService weights: 100/0 to 0/100 in one write, and back."""

    preview_route: HeaderRouteSpec | None = field(
        "previewRoute", doc="Requests matching it reach the new version before cut-over."
    )
    pre_promotion_analysis: AnalysisRef | None = field("prePromotionAnalysis")
    post_promotion_analysis: AnalysisRef | None = field("postPromotionAnalysis")
    auto_promotion_seconds: int | None = field(
        "autoPromotionSeconds", minimum=0,
        doc="Cut over this long after the preview is ready; unset waits for promote.",
    )
    scale_down_delay_seconds: int = field("scaleDownDelaySeconds", default=30, minimum=0)


@dataclass(frozen=True)
class Strategy:
    """Exactly one of canary, blueGreen."""

    canary: CanaryStrategy | None = field("canary")
    blue_green: BlueGreenStrategy | None = field("blueGreen")

    __schema_extra__ = {"minProperties": 1, "maxProperties": 1}


# --- objectives, security, local --------------------------------------------------------


class SloMetrics(str, Enum):
    """Whose numbers the SLO reads in a cluster."""

    ISTIO = "istio"  # istio_requests_total / istio_request_duration from the sidecars
    ENVOY = "envoy"  # the proxies' own Envoy cluster stats (no Istio telemetry needed)


@dataclass(frozen=True)
class Slo:
    """The objectives every analysis step checks unless it names templates."""

    latency_p95: Duration = field("latencyP95", default=Duration("50ms"), minimum=0.001)
    availability: str = field(
        "availability", default="99.99%", pattern=r"^[0-9]{1,3}(\.[0-9]+)?%$"
    )
    window: Duration = field(
        "window", default=Duration("1m"), minimum=1, pattern=WHOLE_PATTERN,
        doc="The rate window of every SLO query (a PromQL range: whole units).",
    )
    min_requests: int = field(
        "minRequests", default=20, minimum=0,
        doc="Below this many requests in the window a measurement is no data.",
    )
    interval: Duration = field("interval", default=Duration("10s"), minimum=1)
    count: int = field("count", default=3, minimum=1)
    failure_limit: int = field("failureLimit", default=0, minimum=0)
    inconclusive_limit: int = field(
        "inconclusiveLimit", default=1, minimum=0,
        doc="No-data measurements tolerated before pausing for a human.",
    )
    metrics: SloMetrics = field(
        "metrics", default=SloMetrics.ISTIO,
        doc="In a cluster: istio (Istio's standard metrics) or envoy (the proxies' own "
        "Envoy stats of the canary's cluster, outbound|<port>|<subset>|<host>). The local "
        "mesh always uses Envoy's.",
    )

    @property
    def availability_ratio(self) -> float:
        return float(self.availability.rstrip("%")) / 100.0


@dataclass(frozen=True)
class JudgeMetricSpec:
    """A metric the judge compares besides its built-ins (mean latency, error ratio)."""

    name: str = field("name", required=True, pattern=DNS_LABEL)
    query: str = field(
        "query", required=True, multiline=True,
        doc="PromQL giving one number per sub-window, rendered once for the canary and once "
        "for the baseline: {{workload}} (in a cluster) or {{cluster}} (the local mesh's "
        "Envoy cluster) name the version, {{window}} is the judge's window. With "
        "provider.kind envoy: an Envoy stat (a histogram's mean, a counter per second) or "
        "COUNTER / COUNTER, e.g. cluster.{{cluster}}.upstream_rq_retry / "
        "cluster.{{cluster}}.upstream_rq_total.")
    direction: Direction = field("direction", default=Direction.HIGHER_IS_WORSE,
                                 doc="higher-is-worse (latency, errors) or lower-is-worse.")


@dataclass(frozen=True)
class JudgeProvider:
    """Where the judge's samples come from."""

    kind: ProviderKind = field(
        "kind", default=ProviderKind.PROMETHEUS,
        doc="prometheus (a range query per sub-window) or envoy (Envoy's own stats, read "
        "directly by meshctl every fraction of a step; the local mesh only).")
    address: str | None = field(
        "address", doc="prometheus: its URL (default the controller's, or the local mesh's); "
        "envoy: the admin host:port (default the local mesh's Envoy).")


@dataclass(frozen=True)
class JudgeSpec:
    """The comparative judge: the canary against the stable version over the same span,
    metric by metric (Mann-Whitney U), scored 0-100. It runs in every analysis step that
    checks the SLO (no templates), beside the SLO's thresholds."""

    lookback: Duration = field(
        "lookback", default=Duration("10m"), minimum=1,
        doc="The span of samples compared, ending now; the judge first measures this long "
        "after its analysis step begins.")
    window: Duration | None = field(
        "window", pattern=WHOLE_PATTERN, minimum=1,
        doc="Each sample's rate window (a PromQL range); default spec.slo.window.")
    step: Duration | None = field(
        "step", minimum=0.001,
        doc="Time between samples; default the window (samples that do not overlap).")
    min_samples: int = field("minSamples", default=10, minimum=2,
                             doc="Fewer samples on either side is no data, never a pass.")
    tolerance: str = field(
        "tolerance", default="5%", pattern=r"^[0-9]{1,3}(\.[0-9]+)?%$",
        doc="A relative change of the mean smaller than this is not a failure, however "
        "significant.")
    significance: float = field("significance", default=0.01, minimum=0.000001, maximum=0.5,
                                doc="A change is significant when its p-value is below this.")
    pass_score: int = field("passScore", default=95, minimum=0, maximum=100)
    marginal_score: int = field(
        "marginalScore", default=75, minimum=0, maximum=100,
        doc="From here up to passScore a person decides (the rollout pauses); below, it fails.")
    metrics: tuple[JudgeMetricSpec, ...] = field("metrics", default=())
    provider: JudgeProvider = field("provider", default=JudgeProvider())
    baseline: Baseline = field(
        "baseline", default=Baseline.STABLE,
        doc="stable: compare with the running stable version; fresh: meshctl starts a new "
        "Deployment of the stable revision at the canary's size, with the same weight as "
        "the canary, and removes it when the rollout ends.")

    @property
    def fresh_baseline(self) -> bool:
        return self.baseline is Baseline.FRESH

    @property
    def tolerance_ratio(self) -> float:
        return float(self.tolerance.rstrip("%")) / 100.0


class MtlsMode(str, Enum):
    STRICT = "STRICT"


@dataclass(frozen=True)
class Source:
    """A caller: a namespace, a service account (in the Rollout's namespace), or both."""

    namespace: str | None = field("namespace", pattern=DNS_LABEL, max_length=LABEL_MAX)
    service_account: str | None = field(
        "serviceAccount", pattern=DNS_SUBDOMAIN, max_length=SUBDOMAIN_MAX
    )

    __schema_extra__ = {"minProperties": 1}


@dataclass(frozen=True)
class AllowRule:
    from_: tuple[Source, ...] = field(
        "from", required=True, min_items=1,
        hint="name at least one caller; an empty list would allow any caller",
    )
    methods: tuple[str, ...] = field("methods", default=())
    paths: tuple[str, ...] = field("paths", default=())
    ports: tuple[int, ...] = field("ports", default=(), items={"minimum": 1, "maximum": 65535})


@dataclass(frozen=True)
class Security:
    mtls: MtlsMode = field("mtls", default=MtlsMode.STRICT)
    allow: tuple[AllowRule, ...] = field("allow", default=())
    require_mutual_tls: bool = field("requireMutualTLS", default=True)
    mtls_gate_opens_without_traffic: bool = field(
        "mtlsGateOpensWithoutTraffic", default=False,
        doc="Let a step advance when no canary request shows whether traffic is mutual TLS.",
    )


@dataclass(frozen=True)
class LocalVersion:
    """A local endpoint: an address meshctl routes to, or a command meshctl starts."""

    address: str | None = field("address", pattern=r"^[^\s:]+:[0-9]{1,5}$")
    command: tuple[str, ...] = field("command", default=(), items={"multiline": True})


@dataclass(frozen=True)
class LocalSpec:
    stable: LocalVersion = field("stable", required=True)
    canary: LocalVersion = field("canary", required=True)
    baseline: LocalVersion | None = field(
        "baseline", doc="A new instance of the stable version, for spec.judge.baseline "
        "fresh: a command meshctl starts with the mesh and stops after, or an address; "
        "default: the stable command, started a second time.")

    def fresh_baseline(self, fresh: bool) -> LocalVersion | None:
        """The fresh baseline's endpoint when ``fresh``: its own, or the stable command."""
        if not fresh:
            return None
        return self.baseline or (self.stable if self.stable.command else None)


@dataclass(frozen=True)
class WorkloadRef:
    name: str = field("name", required=True, pattern=DNS_LABEL)
    kind: str = field("kind", default="Deployment", pattern="^Deployment$")


@dataclass(frozen=True)
class RolloutSpec:
    service: str = field("service", required=True, pattern=DNS_LABEL)
    strategy: Strategy = field("strategy", required=True)
    workload_ref: WorkloadRef | None = field("workloadRef")
    template: dict[str, Any] | None = field(
        "template", opaque=True, doc="PodTemplateSpec of the new version."
    )
    traffic_routing: TrafficRouting | None = field("trafficRouting")
    slo: Slo = field("slo", default=Slo())
    judge: JudgeSpec | None = field("judge")
    security: Security | None = field("security")
    progress_deadline_seconds: int = field("progressDeadlineSeconds", default=600, minimum=1)
    abort_scale_down_delay_seconds: int = field(
        "abortScaleDownDelaySeconds", default=30, minimum=0
    )
    paused: bool = field("paused", default=False)
    local: LocalSpec | None = field("local")
    gates: tuple[GateSpec, ...] = field(
        "gates", default=(), doc="Release gates: windows, webhooks, approvals and Jobs at "
        "named points of the rollout.")
    notifications: tuple[NotificationSink, ...] = field(
        "notifications", default=(), doc="Where the rollout's events are sent (CloudEvents "
        "or Slack-compatible text).")

    @property
    def fresh_baseline(self) -> bool:
        """A fresh baseline runs beside the canary (``spec.judge.baseline: fresh``)."""
        return self.judge is not None and self.judge.fresh_baseline


@dataclass(frozen=True)
class Metadata:
    name: str = field("name", required=True, pattern=DNS_LABEL, max_length=LABEL_MAX)
    namespace: str = field("namespace", default="default", pattern=DNS_LABEL,
                           max_length=LABEL_MAX)
    generation: int = field("generation", default=0)
    annotations: dict[str, str] | None = field("annotations")


@dataclass(frozen=True)
class Rollout:
    metadata: Metadata
    spec: RolloutSpec

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace


# --- AnalysisTemplate --------------------------------------------------------------------


@dataclass(frozen=True)
class PrometheusProvider:
    query: str = field("query", required=True, multiline=True)
    address: str | None = field("address", doc="Defaults to the controller's Prometheus.")
    timeout: Duration = field("timeout", default=Duration("10s"), minimum=0.001)


@dataclass(frozen=True)
class EnvoyStatsProvider:
    """One stat read directly from an Envoy's admin endpoint (no Prometheus needed)."""

    stat: str = field("stat", required=True, pattern=r"^[A-Za-z0-9_.:|-]+$",
                      doc="The stat's full name, e.g. cluster.canary.upstream_rq_5xx (a "
                      "counter or gauge) or cluster.canary.upstream_rq_time (a histogram, "
                      "with quantile).")
    quantile: float | None = field("quantile", minimum=0, maximum=100,
                                   doc="For a histogram: the quantile, e.g. 95 (since start).")
    address: str | None = field("address", pattern=r"^[^\s:/]+:[0-9]{1,5}$",
                                doc="Envoy's admin address host:port; default the local "
                                "mesh's Envoy.")
    timeout: Duration = field("timeout", default=Duration("5s"), minimum=0.001)


@dataclass(frozen=True)
class WebProvider:
    """GET a URL that answers JSON and read one number in it."""

    url: str = field("url", required=True, pattern=r"^https?://[^\s]+$")
    json_path: str = field("jsonPath", required=True,
                           doc="Where the number is: $.name, ['name'] and [index] steps, "
                           "e.g. $.data.errorRatio or $.items[0]['p95']")
    timeout: Duration = field("timeout", default=Duration("5s"), minimum=0.001)


@dataclass(frozen=True)
class Provider:
    """Where the metric's numbers come from; exactly one of prometheus, envoy, web."""

    prometheus: PrometheusProvider | None = field("prometheus")
    envoy: EnvoyStatsProvider | None = field("envoy")
    web: WebProvider | None = field("web")

    __schema_extra__ = {"minProperties": 1, "maxProperties": 1}


@dataclass(frozen=True)
class MetricSpec:
    name: str = field("name", required=True, pattern=DNS_LABEL)
    provider: Provider = field("provider", required=True)
    success_condition: str | None = field("successCondition", doc="e.g. result < 50")
    failure_condition: str | None = field("failureCondition", doc="e.g. result >= 0.05")
    interval: Duration = field("interval", default=Duration("10s"), minimum=1)
    count: int = field("count", default=1, minimum=1)
    failure_limit: int = field("failureLimit", default=0, minimum=0)
    inconclusive_limit: int = field("inconclusiveLimit", default=0, minimum=0)
    consecutive_error_limit: int = field("consecutiveErrorLimit", default=4, minimum=0)
    initial_delay: Duration | None = field("initialDelay")
    min_samples: int = field("minSamples", default=1, minimum=1)


@dataclass(frozen=True)
class ArgSpec:
    name: str = field("name", required=True)
    value: str | None = field("value", doc="Default value.")


@dataclass(frozen=True)
class AnalysisTemplateSpec:
    metrics: tuple[MetricSpec, ...] = field("metrics", required=True, min_items=1)
    args: tuple[ArgSpec, ...] = field("args", default=())


@dataclass(frozen=True)
class AnalysisTemplate:
    metadata: Metadata
    spec: AnalysisTemplateSpec

    @property
    def name(self) -> str:
        return self.metadata.name
