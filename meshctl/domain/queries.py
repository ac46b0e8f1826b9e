"""PromQL query templates for SLO gates, and a renderer that cannot be injected.

A template is PromQL with placeholders ``{{name}}`` (``{{ name }}`` and dotted names such as
``{{args.service}}`` work too). :func:`render` substitutes each placeholder according to
where it stands, so that no value can change the shape of the query:

- inside a double- or single-quoted string literal the value is escaped for that literal
  (backslash and the quote get a backslash); inside a regex matcher's literal (``=~`` /
  ``!~``) regex metacharacters are escaped first, so the value matches itself only; inside a
  backtick (raw) literal a value containing a backtick is rejected;
- inside a range ``[...]`` the value must be a PromQL duration (``30s``, ``5m``, ``1h30m``),
  at least ``min_window_seconds`` when given;
- anywhere else the value must be a duration or a plain non-negative number.

Every value must be non-empty and printable (no newline, no control or other non-printable
character); otherwise :func:`render` raises ValueError naming the variable.

Worked examples::

    >>> render('up{job="{{job}}"}', {"job": 'a"b'})
    'up{job="a\\\\"b"}'
    >>> render('rate(x{pod=~"{{pod}}-.*"}[{{window}}])', {"pod": "web.1", "window": "1m"})
    'rate(x{pod=~"web\\\\\\\\.1-.*"}[1m])'

(In the second, the regex ``web\\.1-.*`` is written ``"web\\\\.1-.*"`` as a PromQL literal.)

Rate windows must span at least 4 scrape intervals (:func:`min_rate_window_seconds`), or
``rate()`` sees too few samples and returns nothing.

Pure: standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*\}\}")
_DURATION = re.compile(r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$")
_DURATION_UNITS = (365 * 86400.0, 7 * 86400.0, 86400.0, 3600.0, 60.0, 1.0, 0.001)
_NUMBER = re.compile(r"^\d+(?:\.\d+)?$")
_REGEX_META = frozenset("\\.+*?()|[]{}^$")

Variables = Mapping[str, str | int | float]


def parse_duration(text: str) -> float:
    """Seconds in a PromQL duration (units y w d h m s ms, largest first, integers).

    ``parse_duration("1m30s") == 90.0``; ``parse_duration("250ms") == 0.25``.
    Raises ValueError for anything else, and for a zero duration.
    """
    match = _DURATION.match(text)
    if not text or match is None:
        raise ValueError(f"{text!r} is not a PromQL duration (e.g. 30s, 5m, 1h30m)")
    seconds = sum(int(n) * unit for n, unit in zip(match.groups(), _DURATION_UNITS, strict=True) if n)
    if seconds <= 0:
        raise ValueError(f"duration {text!r} must be greater than zero")
    return seconds


def min_rate_window_seconds(scrape_interval_seconds: float) -> float:
    """The shortest sound ``rate()`` window: 4 scrape intervals (1 s scrape -> 4 s window)."""
    return 4.0 * scrape_interval_seconds


def placeholders(template: str) -> frozenset[str]:
    """The variable names a template uses."""
    return frozenset(m.group(1) for m in _PLACEHOLDER.finditer(template))


def render(template: str, variables: Variables, *, min_window_seconds: float | None = None) -> str:
    """Substitute every ``{{name}}`` in ``template``; see the module docstring for the rules.

    Raises ValueError (naming the variable) for a missing, empty, non-printable or
    misplaced value, and for a template with an unterminated placeholder or literal.
    """
    out: list[str] = []
    quote: str | None = None  # the quote of the string literal we are in, if any
    regex = False  # that literal belongs to a =~ or !~ matcher
    comment = False  # after a # outside literals, up to the end of the line
    brackets: list[str] = []
    i = 0
    while i < len(template):
        placeholder = _PLACEHOLDER.match(template, i)
        if placeholder is not None:
            name = placeholder.group(1)
            in_range = bool(brackets) and brackets[-1] == "["
            context = _Context(quote, regex, in_range, comment)
            out.append(_substitute(name, variables, context, min_window_seconds))
            i = placeholder.end()
            continue
        char = template[i]
        if template.startswith("{{", i) and not _PLACEHOLDER.match(template, i + 1):
            raise ValueError(f"unterminated or malformed placeholder at offset {i}")
        if comment:
            comment = char != "\n"
        elif quote is not None:
            if char == "\\" and quote != "`":
                out.append(template[i : i + 2])
                i += 2
                continue
            if char == quote:
                quote = None
        elif char == "#":
            comment = True
        elif char in "\"'`":
            quote, regex = char, _after_regex_operator("".join(out))
        elif char in "([{":
            brackets.append(char)
        elif char in ")]}" and brackets:
            brackets.pop()
        out.append(char)
        i += 1
    if quote is not None:
        raise ValueError(f"template has an unterminated {quote} string literal")
    return "".join(out)


@dataclass(frozen=True)
class _Context:
    quote: str | None
    regex: bool
    in_range: bool
    comment: bool


def _substitute(name: str, variables: Variables, context: _Context, min_window_seconds: float | None) -> str:
    if name not in variables:
        raise ValueError(f"template uses {{{{{name}}}}} but no value was given for {name!r}")
    raw = variables[name]
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise ValueError(f"variable {name!r} must be a string or a number, got {raw!r}")
    value = str(raw)
    if value == "":
        raise ValueError(f"variable {name!r} is empty")
    if not value.isprintable():
        raise ValueError(f"variable {name!r} contains a newline, control or other non-printable character")
    if context.comment:  # printable means single-line: it cannot leave the comment
        return value
    if context.quote is not None:
        return _escape_literal(name, value, context)
    if context.in_range:
        return _window(name, value, min_window_seconds)
    if _NUMBER.match(value):
        return value
    try:
        parse_duration(value)
    except ValueError:
        raise ValueError(
            f"variable {name!r} stands outside a string literal, where only a duration or a "
            f"number may go; got {value!r}"
        ) from None
    return value


def _escape_literal(name: str, value: str, context: _Context) -> str:
    if context.regex:
        value = "".join("\\" + c if c in _REGEX_META else c for c in value)
    if context.quote == "`":
        if "`" in value:
            raise ValueError(f"variable {name!r} contains a backtick, used in a raw `literal`")
        return value
    assert context.quote is not None
    return value.replace("\\", "\\\\").replace(context.quote, "\\" + context.quote)


def _window(name: str, value: str, min_window_seconds: float | None) -> str:
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise ValueError(f"variable {name!r}: {exc}") from None
    if min_window_seconds is not None and seconds < min_window_seconds:
        raise ValueError(
            f"variable {name!r}: window {value} is shorter than {min_window_seconds:g}s "
            "(rate windows must span at least 4 scrape intervals)"
        )
    return value


def _after_regex_operator(rendered: str) -> bool:
    stripped = rendered.rstrip()
    return stripped.endswith(("=~", "!~"))


@dataclass(frozen=True)
class QueryTemplate:
    """A built-in query: ``text`` with placeholders, what it measures, and its unit."""

    name: str
    text: str
    description: str
    unit: str

    @property
    def variables(self) -> frozenset[str]:
        return placeholders(self.text)

    def render(self, variables: Variables, *, min_window_seconds: float | None = None) -> str:
        return render(self.text, variables, min_window_seconds=min_window_seconds)


def _availability(total: str, errors: str) -> str:
    # A counter of 5xx may not exist until the first 5xx: "or vector(0)" makes "no errors"
    # a zero, while "no requests" stays empty (0/0 is NaN): no data, never a pass.
    return f"1 - ((sum(rate({errors})) or vector(0)) / sum(rate({total})))"


def _since(selector: str) -> str:
    """A counter's increase since ``{{since}}`` (a Unix time, ``{{span}}`` before now): its
    value now less its first sample after that moment; nothing while no sample has come
    since; a series born after it counts from zero. Sample differences, not ``rate()``: no
    extrapolation, no second sample needed, so the first scrape after a fault shows it. The
    baseline is the first sample *after* the moment, not the last one before it: that one
    can be up to a scrape interval older and would count requests from before the moment
    (the errors that rolled back a canary, counted again against its retry)."""
    at = f"{selector} @ {{{{since}}}}"
    first_after = f"min_over_time({selector}[{{{{span}}}}])"
    return f"({selector} - (({first_after} and {at}) or {at} or {selector} * 0))"


def _availability_since(total: str, errors: str) -> str:
    """1 - errors/requests, each counted :func:`_since` the moment, at least 0. An error
    series born after the moment counts from zero, while the requests count from their first
    sample after it: errors can then outnumber the requests counted (even with none counted,
    a ratio of -Inf), which only errs toward failing; the floor keeps the value a share."""
    return f"clamp_min(1 - ((sum({_since(errors)}) or vector(0)) / sum({_since(total)})), 0)"


_ENVOY = 'envoy_cluster_name="{{cluster}}"'
_ISTIO = (
    'reporter="destination", destination_service_namespace="{{namespace}}", '
    'destination_service_name="{{service}}", destination_workload="{{workload}}"'
)
_W = "[{{window}}]"
# An istio-proxy's own stats, as its bootstrap tags them: label cluster_name (Istio's
# cluster name outbound|<port>|<subset>|<host FQDN>), response_code_class "5xx". The port is
# the Service's, which the Rollout does not name, so any port matches. canaryCluster is
# "<subset>|<host>" (host-level: "|<canaryService FQDN>"), escaped to match itself.
_ISTIO_ENVOY = 'cluster_name=~"outbound\\\\|[0-9]+\\\\|{{canaryCluster}}"'

ENVOY_LATENCY_P95 = QueryTemplate(
    name="envoy-latency-p95",
    text="histogram_quantile(0.95, sum by (le) "
    f"(rate(envoy_cluster_upstream_rq_time_bucket{{{_ENVOY}}}{_W})))",
    description="95th percentile of upstream request time of one Envoy cluster",
    unit="ms",
)
ENVOY_AVAILABILITY = QueryTemplate(
    name="envoy-availability",
    text=_availability(
        total=f"envoy_cluster_upstream_rq_total{{{_ENVOY}}}{_W}",
        errors=f'envoy_cluster_upstream_rq_xx{{{_ENVOY}, envoy_response_code_class="5"}}{_W}',
    ),
    description="share of requests to one Envoy cluster answered without a 5xx",
    unit="ratio",
)
ENVOY_REQUESTS = QueryTemplate(
    name="envoy-requests",
    text=f"sum(increase(envoy_cluster_upstream_rq_total{{{_ENVOY}}}{_W}))",
    description="requests sent to one Envoy cluster over the window (for minRequests)",
    unit="requests",
)
ISTIO_ENVOY_LATENCY_P95 = QueryTemplate(
    name="istio-envoy-latency-p95",
    text="histogram_quantile(0.95, sum by (le) "
    f"(rate(envoy_cluster_upstream_rq_time_bucket{{{_ISTIO_ENVOY}}}{_W})))",
    description="95th percentile of upstream request time to the canary, at the proxies",
    unit="ms",
)
ISTIO_ENVOY_AVAILABILITY = QueryTemplate(
    name="istio-envoy-availability",
    text=_availability(
        total=f"envoy_cluster_upstream_rq_total{{{_ISTIO_ENVOY}}}{_W}",
        errors=f'envoy_cluster_upstream_rq{{{_ISTIO_ENVOY}, response_code_class="5xx"}}{_W}',
    ),
    description="share of the proxies' requests to the canary answered without a 5xx",
    unit="ratio",
)
ISTIO_ENVOY_REQUESTS = QueryTemplate(
    name="istio-envoy-requests",
    text=f"sum(increase(envoy_cluster_upstream_rq_total{{{_ISTIO_ENVOY}}}{_W}))",
    description="requests the proxies sent to the canary over the window",
    unit="requests",
)
ISTIO_LATENCY_P95 = QueryTemplate(
    name="istio-latency-p95",
    text="histogram_quantile(0.95, sum by (le) "
    f"(rate(istio_request_duration_milliseconds_bucket{{{_ISTIO}}}{_W})))",
    description="95th percentile of request duration at the destination workload",
    unit="ms",
)
ISTIO_AVAILABILITY = QueryTemplate(
    name="istio-availability",
    text=_availability(
        total=f"istio_requests_total{{{_ISTIO}}}{_W}",
        errors=f'istio_requests_total{{{_ISTIO}, response_code=~"5.."}}{_W}',
    ),
    description="share of requests to the destination workload answered without a 5xx",
    unit="ratio",
)
ISTIO_REQUESTS = QueryTemplate(
    name="istio-requests",
    text=f"sum(increase(istio_requests_total{{{_ISTIO}}}{_W}))",
    description="requests the destination workload received over the window",
    unit="requests",
)
# The fast availability check's (meshctl.domain.resolve): the same measures counted since
# {{since}} instead of over a rate window.
ENVOY_AVAILABILITY_SINCE = QueryTemplate(
    name="envoy-availability-since",
    text=_availability_since(
        total=f"envoy_cluster_upstream_rq_total{{{_ENVOY}}}",
        errors=f'envoy_cluster_upstream_rq_xx{{{_ENVOY}, envoy_response_code_class="5"}}',
    ),
    description="share of requests to one Envoy cluster since a moment answered without a 5xx",
    unit="ratio",
)
ENVOY_REQUESTS_SINCE = QueryTemplate(
    name="envoy-requests-since",
    text=f"sum({_since(f'envoy_cluster_upstream_rq_total{{{_ENVOY}}}')})",
    description="requests sent to one Envoy cluster since a moment",
    unit="requests",
)
ISTIO_ENVOY_AVAILABILITY_SINCE = QueryTemplate(
    name="istio-envoy-availability-since",
    text=_availability_since(
        total=f"envoy_cluster_upstream_rq_total{{{_ISTIO_ENVOY}}}",
        errors=f'envoy_cluster_upstream_rq{{{_ISTIO_ENVOY}, response_code_class="5xx"}}',
    ),
    description="share of the proxies' requests to the canary since a moment without a 5xx",
    unit="ratio",
)
ISTIO_ENVOY_REQUESTS_SINCE = QueryTemplate(
    name="istio-envoy-requests-since",
    text=f"sum({_since(f'envoy_cluster_upstream_rq_total{{{_ISTIO_ENVOY}}}')})",
    description="requests the proxies sent to the canary since a moment",
    unit="requests",
)
ISTIO_AVAILABILITY_SINCE = QueryTemplate(
    name="istio-availability-since",
    text=_availability_since(
        total=f"istio_requests_total{{{_ISTIO}}}",
        errors=f'istio_requests_total{{{_ISTIO}, response_code=~"5.."}}',
    ),
    description="share of requests to the destination workload since a moment without a 5xx",
    unit="ratio",
)
ISTIO_REQUESTS_SINCE = QueryTemplate(
    name="istio-requests-since",
    text=f"sum({_since(f'istio_requests_total{{{_ISTIO}}}')})",
    description="requests the destination workload received since a moment",
    unit="requests",
)
ISTIO_MTLS_SHARE = QueryTemplate(
    name="istio-mtls-share",
    text="(sum(rate(istio_requests_total{"
    + _ISTIO
    + ', connection_security_policy="mutual_tls"}'
    + _W
    + ")) or vector(0)) / sum(rate(istio_requests_total{"
    + _ISTIO
    + "}"
    + _W
    + "))",
    description="share of requests to the destination workload that arrived over mutual TLS",
    unit="ratio",
)

# The comparative judge's built-ins (meshctl.domain.judge): one number per sub-window, the
# same query rendered for the canary and for the baseline. Mean latency (the histogram's
# sum over its count: exact, where a quantile interpolates inside coarse buckets), and the
# error ratio (no 5xx series yet is no error; no request at all is NaN: no sample).
ENVOY_LATENCY_MEAN = QueryTemplate(
    name="envoy-latency-mean",
    text=f"sum(rate(envoy_cluster_upstream_rq_time_sum{{{_ENVOY}}}{_W})) / "
    f"sum(rate(envoy_cluster_upstream_rq_time_count{{{_ENVOY}}}{_W}))",
    description="mean upstream request time of one Envoy cluster",
    unit="ms",
)
ENVOY_ERROR_RATIO = QueryTemplate(
    name="envoy-error-ratio",
    text=f'(sum(rate(envoy_cluster_upstream_rq_xx{{{_ENVOY}, envoy_response_code_class="5"}}{_W})) '
    f"or vector(0)) / sum(rate(envoy_cluster_upstream_rq_total{{{_ENVOY}}}{_W}))",
    description="share of requests to one Envoy cluster answered with a 5xx",
    unit="ratio",
)
ISTIO_ENVOY_LATENCY_MEAN = QueryTemplate(
    name="istio-envoy-latency-mean",
    text=f"sum(rate(envoy_cluster_upstream_rq_time_sum{{{_ISTIO_ENVOY}}}{_W})) / "
    f"sum(rate(envoy_cluster_upstream_rq_time_count{{{_ISTIO_ENVOY}}}{_W}))",
    description="mean upstream request time to one version, at the proxies",
    unit="ms",
)
ISTIO_ENVOY_ERROR_RATIO = QueryTemplate(
    name="istio-envoy-error-ratio",
    text=f'(sum(rate(envoy_cluster_upstream_rq{{{_ISTIO_ENVOY}, response_code_class="5xx"}}{_W})) '
    f"or vector(0)) / sum(rate(envoy_cluster_upstream_rq_total{{{_ISTIO_ENVOY}}}{_W}))",
    description="share of the proxies' requests to one version answered with a 5xx",
    unit="ratio",
)
ISTIO_LATENCY_MEAN = QueryTemplate(
    name="istio-latency-mean",
    text=f"sum(rate(istio_request_duration_milliseconds_sum{{{_ISTIO}}}{_W})) / "
    f"sum(rate(istio_request_duration_milliseconds_count{{{_ISTIO}}}{_W}))",
    description="mean request duration at the destination workload",
    unit="ms",
)
ISTIO_ERROR_RATIO = QueryTemplate(
    name="istio-error-ratio",
    text=f'(sum(rate(istio_requests_total{{{_ISTIO}, response_code=~"5.."}}{_W})) or vector(0)) '
    f"/ sum(rate(istio_requests_total{{{_ISTIO}}}{_W}))",
    description="share of requests to the destination workload answered with a 5xx",
    unit="ratio",
)

BUILTIN_TEMPLATES: Mapping[str, QueryTemplate] = {
    t.name: t
    for t in (
        ENVOY_LATENCY_P95,
        ENVOY_AVAILABILITY,
        ENVOY_REQUESTS,
        ISTIO_ENVOY_LATENCY_P95,
        ISTIO_ENVOY_AVAILABILITY,
        ISTIO_ENVOY_REQUESTS,
        ISTIO_LATENCY_P95,
        ISTIO_AVAILABILITY,
        ISTIO_REQUESTS,
        ISTIO_MTLS_SHARE,
        ENVOY_LATENCY_MEAN,
        ENVOY_ERROR_RATIO,
        ISTIO_ENVOY_LATENCY_MEAN,
        ISTIO_ENVOY_ERROR_RATIO,
        ISTIO_LATENCY_MEAN,
        ISTIO_ERROR_RATIO,
    )
}
