"""deploy/grafana/pushgate-dashboard.json cannot drift from the code: it is
valid dashboard JSON on a Prometheus datasource variable, every metric name
in any of its queries is one a live node exports on /metrics, and it shows
every metric SPEC §5 promises plus latency, drops, rejections, reconnects."""

import json
import re

import pytest

import deploykit
import pgtest

DASHBOARD = deploykit.REPO / "deploy" / "grafana" / "pushgate-dashboard.json"

# PromQL words that look like names but are not metrics.
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right",
                "offset", "bool", "and", "or", "unless", "inf", "nan"}

# What the dashboard must show: SPEC §5's minimum set, and the extras the
# issue asks for.
REQUIRED = {"pushgate_connections", "pushgate_messages_received_total",
            "pushgate_deliveries_total", "pushgate_slow_consumer_disconnects_total",
            "pushgate_publish_requests_total", "pushgate_redis_connected",
            "pushgate_redis_reconnects_total", "pushgate_subscribed_channels",
            "pushgate_delivery_latency_seconds_bucket",
            "pushgate_messages_dropped_total", "pushgate_connections_rejected_total"}


def metric_names(expr):
    """Metric names in a PromQL expression: identifiers that are not
    functions, keywords, label names (in {...} or by/without/on/ignoring
    lists), durations in [...], strings or $variables."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)           # strings
    e = re.sub(r"\{[^}]*\}", " ", e)                         # label matchers
    e = re.sub(r"\[[^\]]*\]", " ", e)                        # ranges
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)",
               " ", e)                                       # label lists
    e = re.sub(r"\$\{?\w+\}?", " ", e)                       # $__range, $instance
    names = set()
    for m in re.finditer(r"(?<![\w.])([A-Za-z_:][A-Za-z0-9_:]*)\b(\s*\()?", e):
        if m.group(2):                                       # a function call
            continue
        if m.group(1).lower() in PROMQL_WORDS:
            continue
        names.add(m.group(1))
    return names


def all_panels(panels):
    for p in panels:
        yield p
        yield from all_panels(p.get("panels", []))


@pytest.fixture(scope="module")
def dashboard():
    return json.loads(DASHBOARD.read_text())


def queries(dash):
    """(where, expr) for every panel target and query variable."""
    out = []
    for p in all_panels(dash["panels"]):
        for t in p.get("targets", []):
            out.append((f"panel {p['title']!r} {t.get('refId')}", t["expr"]))
    for v in dash["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            m = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", q)
            assert m, f"variable {v['name']}: unexpected query {q}"
            out.append((f"variable {v['name']}", m.group(1)))
    return out


def test_metric_name_parser():
    assert metric_names('histogram_quantile(0.99, sum by (le) (rate('
                        'pushgate_delivery_latency_seconds_bucket{instance=~"$instance"}'
                        '[$__rate_interval])))') == {"pushgate_delivery_latency_seconds_bucket"}
    assert metric_names('count(a_total{x!="y"} == 0) or vector(0)') == {"a_total"}
    assert metric_names('sum(rate(a[5m])) / sum(rate(b_count[5m]))') == {"a", "b_count"}


def test_dashboard_structure(dashboard):
    d = dashboard
    assert d["title"] and d["uid"] and isinstance(d["schemaVersion"], int)
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = [p for p in all_panels(d["panels"]) if p["type"] != "row"]
    ids = [p["id"] for p in all_panels(d["panels"])]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    for p in panels:
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}", p["title"]
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24 and g["w"] > 0 and g["h"] > 0, p["title"]
    # Panels do not overlap on the 24-column grid.
    cells = {}
    for p in panels:
        g = p["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = p["title"]


def test_dashboard_covers_the_documented_metrics(dashboard):
    used = set().union(*(metric_names(e) for _, e in queries(dashboard)))
    assert REQUIRED <= used, f"not on the dashboard: {sorted(REQUIRED - used)}"
    exprs = " ".join(e for _, e in queries(dashboard))
    for q in ("0.5", "0.99"):
        assert re.search(rf"histogram_quantile\({q},\s*sum by \((?:instance, )?le\) "
                         r"\(rate\(pushgate_delivery_latency_seconds_bucket", exprs), q


def test_every_metric_in_the_dashboard_is_exported_by_a_live_node(dashboard, gateway_factory):
    gw = gateway_factory(["--api-key", pgtest.API_KEY])
    text = gw.metrics()
    exported = set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{|\s)", text, re.M))
    for where, expr in queries(dashboard):
        names = metric_names(expr)
        assert names, f"{where}: no metric in {expr}"
        missing = names - exported
        assert not missing, f"{where}: {sorted(missing)} not in /metrics of a live node"
    # Label values the dashboard filters on exist too.
    assert 'pushgate_connections{transport="ws"}' in text
    assert 'pushgate_publish_requests_total{code="200"}' in text
    assert 'pushgate_delivery_latency_seconds_bucket{le="' in text
