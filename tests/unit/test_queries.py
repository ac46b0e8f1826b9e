"""PromQL templates and their renderer: values are escaped by where they stand, and a value
that could change the shape of a query is rejected, naming the variable."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshctl.domain.queries import (
    BUILTIN_TEMPLATES,
    ENVOY_AVAILABILITY,
    ENVOY_LATENCY_P95,
    ISTIO_AVAILABILITY,
    ISTIO_LATENCY_P95,
    ISTIO_MTLS_SHARE,
    min_rate_window_seconds,
    parse_duration,
    placeholders,
    render,
)

RENDERED = [
    # (sentence, template, variables, expected)
    (
        "a plain value inside a double-quoted literal is copied",
        'up{job="{{job}}"}',
        {"job": "envoy"},
        'up{job="envoy"}',
    ),
    (
        "a double quote in the value is escaped, so it cannot close the literal",
        'up{job="{{job}}"}',
        {"job": 'foo"} or vector(1) #'},
        'up{job="foo\\"} or vector(1) #"}',
    ),
    (
        'a backslash is escaped before the quote, so \\" cannot unescape it',
        'up{job="{{job}}"}',
        {"job": 'a\\"} or vector(1) #'},
        'up{job="a\\\\\\"} or vector(1) #"}',
    ),
    (
        "inside a single-quoted literal the single quote is escaped",
        "up{job='{{job}}'}",
        {"job": "it's"},
        "up{job='it\\'s'}",
    ),
    (
        "a double quote needs no escape inside a single-quoted literal",
        "up{job='{{job}}'}",
        {"job": 'say "hi"'},
        "up{job='say \"hi\"'}",
    ),
    (
        "in a regex matcher, regex metacharacters are escaped so the value matches itself",
        'up{pod=~"{{pod}}-.*"}',
        {"pod": "web.1"},
        'up{pod=~"web\\\\.1-.*"}',
    ),
    (
        "a regex wildcard as a value cannot widen the match",
        'up{pod!~"{{pod}}"}',
        {"pod": ".*"},
        'up{pod!~"\\\\.\\\\*"}',
    ),
    (
        "an equality matcher keeps regex characters as they are",
        'up{pod="{{pod}}"}',
        {"pod": "web.1"},
        'up{pod="web.1"}',
    ),
    (
        "a window in a range takes a duration",
        "rate(x[{{window}}])",
        {"window": "1h30m"},
        "rate(x[1h30m])",
    ),
    (
        "spaces inside the braces and dotted names are accepted",
        'x{a="{{ args.service }}"}[{{window}}]',
        {"args.service": "reviews", "window": "5m"},
        'x{a="reviews"}[5m]',
    ),
    (
        "a number may stand outside a literal",
        "histogram_quantile({{q}}, x)",
        {"q": 0.95},
        "histogram_quantile(0.95, x)",
    ),
    (
        "a template brace followed by a placeholder is a label set, not a malformed placeholder",
        "x{{{matcher}}}",
        {"matcher": "5m"},
        "x{5m}",
    ),
    (
        "an escaped quote in the template does not end the literal",
        'x{a="q\\"{{v}}"}',
        {"v": "b"},
        'x{a="q\\"b"}',
    ),
    (
        "a quote inside a comment does not open a literal",
        "x # don't\n+ y[{{window}}]",
        {"window": "5m"},
        "x # don't\n+ y[5m]",
    ),
    (
        "unused variables are ignored",
        "up",
        {"job": "x"},
        "up",
    ),
]


@pytest.mark.parametrize(
    ("template", "variables", "expected"),
    [case[1:] for case in RENDERED],
    ids=[case[0] for case in RENDERED],
)
def test_render(template: str, variables: dict[str, str], expected: str) -> None:
    assert render(template, variables) == expected


REJECTED = [
    # (sentence, template, variables, message fragment)
    ("a newline could end a comment or a line", 'x{a="{{v}}"}', {"v": "a\nb"}, "'v'"),
    ("a carriage return is a control character", 'x{a="{{v}}"}', {"v": "a\rb"}, "'v'"),
    ("a NUL byte is a control character", 'x{a="{{v}}"}', {"v": "a\x00"}, "'v'"),
    ("a tab is not printable either", 'x{a="{{v}}"}', {"v": "a\tb"}, "'v'"),
    ("a Unicode line separator is not printable", 'x{a="{{v}}"}', {"v": "a\u2028b"}, "'v'"),
    ("an empty value would match series without the label", 'x{a="{{v}}"}', {"v": ""}, "empty"),
    ("a missing variable is named", 'x{a="{{service}}"}', {}, "'service'"),
    ("a window must be a PromQL duration", "rate(x[{{window}}])", {"window": "5 m"}, "'window'"),
    ("a fractional duration is not PromQL", "rate(x[{{window}}])", {"window": "1.5m"}, "'window'"),
    ("a zero window is refused", "rate(x[{{window}}])", {"window": "0s"}, "greater than zero"),
    (
        "an injection attempt through the window is refused",
        "rate(x[{{window}}])",
        {"window": "5m]) or vector(1) #"},
        "'window'",
    ),
    (
        "text outside a literal must be a number or duration",
        "sum(x) by ({{label}})",
        {"label": "pod) or vector(1"},
        "'label'",
    ),
    ("a backtick cannot go into a raw literal", "x{a=`{{v}}`}", {"v": "a`b"}, "backtick"),
    ("a boolean is not a value", 'x{a="{{v}}"}', {"v": True}, "'v'"),
    ("an unterminated placeholder is malformed", 'x{a="{{v"}', {"v": "a"}, "placeholder"),
    ("an unterminated literal is malformed", 'x{a="{{v}}}', {"v": "a"}, "unterminated"),
]


@pytest.mark.parametrize(
    ("template", "variables", "fragment"),
    [case[1:] for case in REJECTED],
    ids=[case[0] for case in REJECTED],
)
def test_render_rejects(template: str, variables: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(")):
        render(template, variables)  # type: ignore[arg-type]


def test_window_shorter_than_four_scrapes_is_refused() -> None:
    """At a 1 s scrape interval a 3 s window has too few samples for rate()."""
    minimum = min_rate_window_seconds(1.0)
    assert minimum == 4.0
    assert render("rate(x[{{w}}])", {"w": "4s"}, min_window_seconds=minimum) == "rate(x[4s])"
    with pytest.raises(ValueError, match=r"'w'.*shorter than 4s"):
        render("rate(x[{{w}}])", {"w": "3s"}, min_window_seconds=minimum)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30.0), ("5m", 300.0), ("1h30m", 5400.0), ("250ms", 0.25), ("1d", 86400.0),
     ("2w", 1209600.0), ("1y", 31536000.0), ("1m30s500ms", 90.5)],
)  # fmt: skip
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "m", "1.5m", "5M", "30s1m", "-5m", "5m ", "1h 30m"])
def test_parse_duration_rejects(text: str) -> None:
    """Units must be integers, lower case and largest first, with nothing else around them."""
    with pytest.raises(ValueError):
        parse_duration(text)


ENVOY_VARS = {"cluster": "app-canary", "window": "1m"}
ISTIO_VARS = {"namespace": "shop", "service": "reviews", "workload": "reviews-canary", "window": "1m"}


def test_envoy_p95_selects_one_cluster() -> None:
    assert ENVOY_LATENCY_P95.render(ENVOY_VARS) == (
        "histogram_quantile(0.95, sum by (le) (rate(envoy_cluster_upstream_rq_time_bucket"
        '{envoy_cluster_name="app-canary"}[1m])))'
    )


def test_envoy_availability_counts_5xx_over_total() -> None:
    assert ENVOY_AVAILABILITY.render(ENVOY_VARS) == (
        '1 - ((sum(rate(envoy_cluster_upstream_rq_xx{envoy_cluster_name="app-canary", '
        'envoy_response_code_class="5"}[1m])) or vector(0)) / '
        'sum(rate(envoy_cluster_upstream_rq_total{envoy_cluster_name="app-canary"}[1m])))'
    )


ISTIO_SELECTOR = (
    'reporter="destination", destination_service_namespace="shop", '
    'destination_service_name="reviews", destination_workload="reviews-canary"'
)


def test_istio_p95_is_destination_reported() -> None:
    assert ISTIO_LATENCY_P95.render(ISTIO_VARS) == (
        "histogram_quantile(0.95, sum by (le) (rate(istio_request_duration_milliseconds_bucket"
        f"{{{ISTIO_SELECTOR}}}[1m])))"
    )


def test_istio_availability_counts_5xx_response_codes() -> None:
    assert ISTIO_AVAILABILITY.render(ISTIO_VARS) == (
        f'1 - ((sum(rate(istio_requests_total{{{ISTIO_SELECTOR}, response_code=~"5.."}}[1m])) '
        f"or vector(0)) / sum(rate(istio_requests_total{{{ISTIO_SELECTOR}}}[1m])))"
    )


def test_istio_mtls_share_uses_connection_security_policy() -> None:
    rendered = ISTIO_MTLS_SHARE.render(ISTIO_VARS)
    assert 'connection_security_policy="mutual_tls"' in rendered
    assert rendered.endswith(f"/ sum(rate(istio_requests_total{{{ISTIO_SELECTOR}}}[1m]))")


def test_the_istio_envoy_templates_select_the_canary_cluster_on_any_port_only() -> None:
    """Istio's cluster names carry dots and pipes: the value matches itself, the port any
    number, so the stable subset and other services' clusters are never counted."""
    import re

    rendered = BUILTIN_TEMPLATES["istio-envoy-requests"].render(
        {"canaryCluster": "canary|web.shop.svc.cluster.local", "window": "1m"})
    literal = rendered.split('=~"', 1)[1].split('"}', 1)[0].replace("\\\\", "\\")
    pattern = re.compile(f"^(?:{literal})$")  # PromQL anchors regex matchers
    assert pattern.match("outbound|80|canary|web.shop.svc.cluster.local")
    assert pattern.match("outbound|8080|canary|web.shop.svc.cluster.local")
    for other in ("outbound|80|stable|web.shop.svc.cluster.local",
                  "outbound|80|canary|webXshop.svc.cluster.local",
                  "outbound|80|canary|web.shop.svc.cluster.local.evil",
                  "inbound|80|canary|web.shop.svc.cluster.local"):
        assert not pattern.match(other), other


def test_builtin_templates_declare_their_variables() -> None:
    assert {name: sorted(t.variables) for name, t in BUILTIN_TEMPLATES.items()} == {
        "envoy-latency-p95": ["cluster", "window"],
        "envoy-availability": ["cluster", "window"],
        "envoy-requests": ["cluster", "window"],
        "istio-envoy-latency-p95": ["canaryCluster", "window"],
        "istio-envoy-availability": ["canaryCluster", "window"],
        "istio-envoy-requests": ["canaryCluster", "window"],
        "istio-latency-p95": ["namespace", "service", "window", "workload"],
        "istio-availability": ["namespace", "service", "window", "workload"],
        "istio-requests": ["namespace", "service", "window", "workload"],
        "istio-mtls-share": ["namespace", "service", "window", "workload"],
        "envoy-latency-mean": ["cluster", "window"],
        "envoy-error-ratio": ["cluster", "window"],
        "istio-envoy-latency-mean": ["canaryCluster", "window"],
        "istio-envoy-error-ratio": ["canaryCluster", "window"],
        "istio-latency-mean": ["namespace", "service", "window", "workload"],
        "istio-error-ratio": ["namespace", "service", "window", "workload"],
    }
    assert placeholders('x{a="{{ a }}"}[{{b}}]') == {"a", "b"}


@given(st.text(min_size=1).filter(str.isprintable))
def test_any_printable_value_stays_inside_its_literal(value: str) -> None:
    """Whatever the value, the rendered query is the template's shape with one literal
    whose unescaped content is exactly the value."""
    rendered = render('up{job="{{v}}"} + 1', {"v": value})
    assert rendered.startswith('up{job="') and rendered.endswith('"} + 1')
    literal = rendered[len('up{job="') : -len('"} + 1')]
    assert _unescape(literal) == value


def _unescape(literal: str) -> str:
    """Read a PromQL double-quoted literal body; fail on an unescaped quote."""
    out, i = [], 0
    while i < len(literal):
        if literal[i] == "\\":
            out.append(literal[i + 1])
            i += 2
            continue
        assert literal[i] != '"', "an unescaped quote would end the literal"
        out.append(literal[i])
        i += 1
    return "".join(out)
