"""The shipped alert rules, their promtool unit tests and the Grafana dashboard.

promtool (Debian's prometheus package; servers/install-debian.sh installs it) checks the rules,
runs their unit tests, and parses every PromQL expression of the dashboard. The metric and label
names they use are pinned to the ones s3s3 exposes (issue #13's list), so a rename on either
side fails here rather than in an operator's empty graph; and a real Prometheus loads the rules
while scraping a real s3s3listen, whose exposition must hold every listener metric they read.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import redis
import yaml
from conftest import raw_client, unique_bucket
from prometheus_client.parser import text_string_to_metric_families
from prometheus_server import Prometheus, get
from test_listener_support import (  # noqa: F401  (fixtures)
    ListenerProcess,
    keys_in,
    names,
    put_keys,
    wait_until,
    write_ini,
)

from s3s3.config import RedisConfig
from s3s3.queue.producer import publish_keys
from servers._common import free_port

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest brings tomli on Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "s3s3" / "data"
RULES = DATA / "s3s3-alerts.yml"
RULE_TESTS = DATA / "s3s3-alerts.test.yml"
DASHBOARD = DATA / "s3s3-dashboard.json"

#: Every metric s3s3 exposes (issue #13), histograms with their series' suffixes.
HISTOGRAMS = {"s3s3_copy_duration_seconds", "s3s3_replication_lag_seconds"}
METRICS = {
    # s3s3listen
    "s3s3_build_info",
    "s3s3_listener_info",
    "s3s3_events_received_total",
    "s3s3_objects_total",
    "s3s3_bytes_written_total",
    "s3s3_source_bytes_read_total",
    "s3s3_copy_errors_total",
    "s3s3_stale_events_total",
    "s3s3_coalesced_events_total",
    "s3s3_retries_total",
    "s3s3_bad_messages_total",
    "s3s3_ignored_events_total",
    "s3s3_dead_lettered_total",
    "s3s3_handed_back_total",
    "s3s3_jobs",
    "s3s3_copies_running",
    "s3s3_endpoint_up",
    "s3s3_redis_up",
    "s3s3_stream_length",
    "s3s3_stream_undelivered",
    "s3s3_stream_pending",
    "s3s3_oldest_pending_age_seconds",
    "s3s3_dead_letters",
    "s3s3_stream_consumers",
    # s3s3intake
    "s3s3_intake_requests_total",
    "s3s3_intake_records_total",
    # s3s3bucket
    "s3s3bucket_last_run_start_timestamp_seconds",
    "s3s3bucket_last_run_end_timestamp_seconds",
    "s3s3bucket_last_run_success",
    "s3s3bucket_last_run_exit_status",
    "s3s3bucket_last_success_timestamp_seconds",
    "s3s3bucket_last_run_duration_seconds",
    "s3s3bucket_objects",
    "s3s3bucket_bytes_written",
    "s3s3bucket_expected_period_seconds",
    # Prometheus's own, per scraped target
    "up",
} | {h + suffix for h in HISTOGRAMS for suffix in ("_bucket", "_sum", "_count")}

#: Every label those metrics carry, and the ones Prometheus adds.
LABELS = {
    "version",
    "consumer",
    "stream",
    "group",
    "mode",
    "destination",
    "outcome",
    "endpoint",
    "role",
    "retryable",
    "reason",
    "state",
    "intake",
    "status",
    "source",
    "le",
    "job",
    "instance",
}

#: PromQL's functions and keywords: identifiers in an expression that are not metric names.
PROMQL_WORDS = {
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "unless",
    "and",
    "or",
    "offset",
    "bool",
    "rate",
    "irate",
    "increase",
    "delta",
    "time",
    "histogram_quantile",
    "label_values",
    "absent",
}


def promtool() -> str:
    found = shutil.which("promtool") or (
        "/usr/bin/promtool" if Path("/usr/bin/promtool").exists() else None
    )
    assert found, "promtool is missing: servers/install-debian.sh installs Debian's prometheus"
    return found


def run_promtool(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def load_rules() -> list[dict]:
    doc = yaml.safe_load(RULES.read_text())
    (group,) = doc["groups"]
    assert group["name"] == "s3s3"
    return group["rules"]


def load_dashboard() -> dict:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def dashboard_exprs(dash: dict) -> list[tuple[str, str]]:
    """(where, expression) for every panel target and every query variable."""
    found = []
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            found.append(
                (f"panel {panel['id']} {panel['title']!r} {target['refId']}", target["expr"])
            )
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
            assert match, f"variable {var['name']}: {query!r} is not label_values(SELECTOR, LABEL)"
            assert match.group(2) in LABELS, f"variable {var['name']}: unknown label"
            found.append((f"variable {var['name']}", match.group(1)))
    return found


def grafana_to_promql(expr: str) -> str:
    """What Grafana sends for ``expr`` with every variable on All (``.*``) and a 5m interval."""
    expr = re.sub(r"\$__(rate_interval|interval|range)\b", "5m", expr)
    return re.sub(r"\$\{?\w+\}?", ".*", expr)


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (strings, label matchers, groupings and
    durations taken out first)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    words = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", expr))
    return {w for w in words if w not in PROMQL_WORDS}


def label_names(expr: str) -> set[str]:
    names: set[str] = set()
    for group in re.findall(
        r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", expr
    ):
        names |= {n.strip() for n in group.split(",") if n.strip()}
    for matchers in re.findall(r"\{([^}]*)\}", expr):
        names |= set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers))
    return names


# --- the rules -------------------------------------------------------------------------------


def test_promtool_checks_the_rules():
    out = run_promtool("check", "rules", RULES)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(load_rules())} rules found" in out.stdout


def test_the_rules_pass_their_promtool_unit_tests():
    out = run_promtool("test", "rules", RULE_TESTS.name, cwd=DATA)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


# Each boundary the unit tests pin: moved a little, a test must fail (a unit test that passes
# whatever the rule says proves nothing).
MUTATIONS = {
    "oldest pending threshold": (
        "s3s3_oldest_pending_age_seconds > 900",
        "s3s3_oldest_pending_age_seconds > 898",
        "S3s3ReplicationLagHigh",
    ),
    "p99 threshold": ("  ) > 900", "  ) > 890", "S3s3ReplicationLagHigh"),
    "twice the period": (
        "> 2 * s3s3bucket_expected_period_seconds",
        "> 1.8 * s3s3bucket_expected_period_seconds",
        "S3s3BucketJobNotSuccessful",
    ),
    "dead letters window": (
        "delta(s3s3_dead_letters[30m])",
        "delta(s3s3_dead_letters[45m])",
        "S3s3DeadLettersGrowing",
    ),
    "never succeeded wait": ("for: 1h", "for: 30m", "S3s3BucketJobNotSuccessful"),
    "destination down for": (
        'role="destination"} == 0\n        for: 5m',
        'role="destination"} == 0\n        for: 3m',
        "S3s3DestinationDown",
    ),
    "Redis down for": (
        "s3s3_redis_up == 0\n        for: 2m",
        "s3s3_redis_up == 0\n        for: 4m",
        "S3s3RedisDown",
    ),
    "listener job": ('up{job=~"s3s3listen.*"}', 'up{job=~".+"}', "S3s3ListenerDown"),
    "a description": ("says why each failed", "says why", "S3s3DeadLettersGrowing"),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_the_unit_tests_catch_a_moved_boundary(name, tmp_path):
    old, new, alert = MUTATIONS[name]
    text = RULES.read_text()
    assert text.count(old) == 1, f"{name}: {old!r} is not in the rules exactly once"
    (tmp_path / RULES.name).write_text(text.replace(old, new))
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    out = run_promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)
    said = out.stdout + out.stderr
    assert out.returncode != 0 and "FAILED" in said, f"{name}: the unit tests still pass"
    # Failed on the alert moved, not on a rules file that no longer loads.
    failed = set(re.findall(r"alertname: (\w+),", said))
    assert failed == {alert}, f"{name}: {said}"


def test_every_alert_has_a_severity_and_says_what_it_concerns():
    names = set()
    for rule in load_rules():
        name = rule["alert"]
        names.add(name)
        assert name.startswith("S3s3"), name
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        summary, description = rule["annotations"]["summary"], rule["annotations"]["description"]
        assert summary.strip() and description.strip(), name
        used = set(re.findall(r"\$labels\.(\w+)", summary + description))
        assert used <= LABELS, f"{name}: unknown labels {used - LABELS}"
        # The annotations name what is wrong where: the endpoint, the source bucket or the
        # process (job and instance).
        concern = {"endpoint", "source", "instance"} & set(re.findall(r"\$labels\.(\w+)", summary))
        assert concern, f"{name}: the summary names neither endpoint, source nor instance"
    assert names == {
        "S3s3ReplicationLagHigh",
        "S3s3DeadLettersGrowing",
        "S3s3BucketJobNotSuccessful",
        "S3s3DestinationDown",
        "S3s3SourceDown",
        "S3s3RedisDown",
        "S3s3ListenerDown",
        "S3s3IntakeDown",
    }


def test_every_rule_is_unit_tested_firing_and_quiet():
    evaluations = [
        e
        for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for e in case["alert_rule_test"]
    ]
    for rule in load_rules():
        name = rule["alert"]
        mine = [e for e in evaluations if e["alertname"] == name]
        assert any(e["exp_alerts"] == [] for e in mine), f"{name}: never shown quiet"
        # Rules sharing an alert name are told apart by their other labels (measure, reason).
        fired = [
            a["exp_labels"]
            for e in mine
            for a in e["exp_alerts"]
            if all(a["exp_labels"].get(k) == v for k, v in rule["labels"].items())
        ]
        assert fired, f"{name} {rule['labels']}: never shown firing"


def test_the_rules_use_only_metrics_and_labels_s3s3_exposes():
    for rule in load_rules():
        expr = rule["expr"]
        assert metric_names(expr) <= METRICS, f"{rule['alert']}: {metric_names(expr) - METRICS}"
        assert label_names(expr) <= LABELS, f"{rule['alert']}: {label_names(expr) - LABELS}"
    # The rules' input series in the unit tests are named like the real ones too.
    for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for series in case["input_series"]:
            name = series["series"].split("{")[0]
            assert name in METRICS, f"{case['name']}: {name}"
            assert label_names(series["series"]) <= LABELS, series["series"]


# --- the dashboard ---------------------------------------------------------------------------


def test_the_dashboard_is_a_grafana_dashboard_asking_for_a_prometheus_data_source():
    dash = load_dashboard()
    assert dash["schemaVersion"] >= 36
    assert dash["uid"] and dash["title"]
    (ds,) = [v for v in dash["templating"]["list"] if v["type"] == "datasource"]
    assert ds["name"] == "datasource" and ds["query"] == "prometheus"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in dash["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24 and pos["w"] > 0 and pos["h"] > 0, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], panel["title"]
            assert target["expr"].strip() and target["refId"], panel["title"]
    # Panels never overlap: each grid cell belongs to one panel.
    cells: dict[tuple[int, int], str] = {}
    for panel in dash["panels"]:
        pos = panel["gridPos"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = panel["title"]


def test_the_dashboard_shows_what_operators_ask_about():
    used = set().union(*(metric_names(e) for _, e in dashboard_exprs(load_dashboard())))
    assert {
        "s3s3_objects_total",  # objects/s by destination and outcome
        "s3s3_bytes_written_total",  # bytes/s
        "s3s3_replication_lag_seconds_bucket",  # lag p50/p99
        "s3s3_oldest_pending_age_seconds",
        "s3s3_stream_length",  # backlog
        "s3s3_stream_undelivered",
        "s3s3_stream_pending",
        "s3s3_dead_letters",
        "s3s3_endpoint_up",
        "s3s3_redis_up",
        "s3s3_intake_requests_total",
        "s3s3bucket_last_success_timestamp_seconds",  # bucket job: last success age
        "s3s3bucket_last_run_success",  # and outcome
    } <= used
    exprs = " ".join(e for _, e in dashboard_exprs(load_dashboard()))
    assert "histogram_quantile(0.5," in exprs and "histogram_quantile(0.99," in exprs
    assert "by (destination, outcome)" in exprs and "by (intake, status)" in exprs


def test_the_dashboard_uses_only_metrics_and_labels_s3s3_exposes():
    dash = load_dashboard()
    for where, expr in dashboard_exprs(dash):
        assert metric_names(expr) <= METRICS, f"{where}: {metric_names(expr) - METRICS}"
        assert label_names(expr) <= LABELS, f"{where}: {label_names(expr) - LABELS}"
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            legend = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")))
            assert legend <= LABELS, f"{panel['title']}: legend {legend - LABELS}"


def test_every_dashboard_expression_parses(tmp_path):
    # promtool parses and type-checks each expression as a recording rule's.
    exprs = dashboard_exprs(load_dashboard())
    rules = [
        {"record": f"s3s3_dashboard:expr_{i}", "expr": grafana_to_promql(expr)}
        for i, (_, expr) in enumerate(exprs)
    ]
    path = tmp_path / "dashboard-exprs.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    out = run_promtool("check", "rules", path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(rules)} rules found" in out.stdout


def test_a_broken_dashboard_expression_would_be_caught(tmp_path):
    # The check above is only worth something if promtool refuses what Grafana would refuse.
    path = tmp_path / "bad.yml"
    bad = grafana_to_promql("sum by (destination) (rate(s3s3_objects_total[$__rate_interval])")
    path.write_text(
        yaml.safe_dump({"groups": [{"name": "d", "rules": [{"record": "x:y", "expr": bad}]}]})
    )
    out = run_promtool("check", "rules", path)
    assert out.returncode != 0 and "unclosed left parenthesis" in out.stdout + out.stderr


# --- shipping --------------------------------------------------------------------------------


def test_the_files_are_package_data_and_the_scripts_are_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = project["tool"]["setuptools"]["package-data"]["s3s3.data"]
    for path in (RULES, RULE_TESTS, DASHBOARD):
        assert any(fnmatch.fnmatch(path.name, p) for p in patterns), path.name
    scripts = project["project"]["scripts"]
    assert scripts["echo_s3s3_alert_rules"] == "s3s3.scripts.echo:alert_rules"
    assert scripts["echo_s3s3_grafana_dashboard"] == "s3s3.scripts.echo:grafana_dashboard"


def echo(script: str, *args: str) -> str:
    # The installed console script (`pip install -e .` puts it beside this interpreter).
    path = Path(sys.executable).parent / script
    assert path.exists(), f"{path} is missing: run `pip install -e .`"
    out = subprocess.run([str(path), *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_echo_s3s3_alert_rules_prints_rules_and_tests_that_pass_on_their_own(tmp_path):
    rules = echo("echo_s3s3_alert_rules")
    tests = echo("echo_s3s3_alert_rules", "--tests")
    assert rules == RULES.read_text() and tests == RULE_TESTS.read_text()
    (tmp_path / "s3s3-alerts.yml").write_text(rules)
    (tmp_path / "s3s3-alerts.test.yml").write_text(tests)
    out = run_promtool("test", "rules", "s3s3-alerts.test.yml", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr


def test_echo_s3s3_grafana_dashboard_prints_the_dashboard():
    printed = echo("echo_s3s3_grafana_dashboard")
    assert json.loads(printed) == load_dashboard()
    assert "echo_s3s3_grafana_dashboard" in echo("echo_s3s3_grafana_dashboard", "--help")


# --- against a real listener and a real Prometheus --------------------------------------------


def test_a_real_prometheus_evaluates_the_rules_and_dashboard_over_a_real_listener(
    tmp_path, moto_servers, names, redis_url
):
    a, b = moto_servers
    src, dst = unique_bucket("asrc"), unique_bucket("adst")
    raw_client(a).create_bucket(Bucket=src)
    raw_client(b).create_bucket(Bucket=dst)
    ini = write_ini(
        tmp_path / "s3s3.ini",
        source=(a, src),
        dests=[(b, dst)],
        channel=names.channel,
        redis_url=redis_url,
        mode="stream",
    )
    port = free_port()
    with ini.open("a") as f:
        f.write(f"\n[metrics]\nlisten = 127.0.0.1:{port}\n")
    listener = ListenerProcess(ini, tmp_path / "listen.log").start()
    prometheus = None
    try:
        keys = [f"alerts/{i}" for i in range(3)]
        put_keys(a, src, keys)
        client = redis.Redis.from_url(redis_url)
        try:
            cfg = RedisConfig(
                url=redis_url, mode="stream", stream=names.stream, channel=names.channel
            )
            publish_keys(client, cfg, keys)
        finally:
            client.close()
        wait_until(lambda: keys_in(b, dst) >= set(keys), 60, what="the keys copied")

        # Every listener metric the rules and the dashboard read is in the exposition.
        status, body = get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        exposed = {s.name for f in text_string_to_metric_families(body.decode()) for s in f.samples}
        used = {n for r in load_rules() for n in metric_names(r["expr"])}
        used |= {n for _, e in dashboard_exprs(load_dashboard()) for n in metric_names(e)}
        listener_side = {
            n
            for n in used
            if n.startswith("s3s3_") and not n.startswith(("s3s3_intake_", "s3s3bucket_"))
        }
        # (Failed tries are by endpoint and retryable: no series before the first one.)
        listener_side.discard("s3s3_copy_errors_total")
        assert listener_side - exposed == set(), listener.output()[-2000:]

        prometheus = Prometheus(tmp_path, [f"127.0.0.1:{port}"], rules=RULES)
        wait_until(
            lambda: prometheus.api("query", query='up{job="s3s3listen"} == 1')["result"],
            60,
            interval_s=0.5,
            what="Prometheus to scrape the listener",
        )
        # Prometheus loaded every rule and evaluates it without error.
        (group,) = prometheus.api("rules")["groups"]
        assert group["name"] == "s3s3" and len(group["rules"]) == len(load_rules())
        wait_until(
            lambda: all(
                r.get("lastEvaluation", "").startswith("20")
                for r in prometheus.api("rules")["groups"][0]["rules"]
            ),
            30,
            interval_s=0.5,
            what="every rule evaluated",
        )
        for rule in prometheus.api("rules")["groups"][0]["rules"]:
            assert rule["health"] == "ok", rule
            assert rule["state"] == "inactive", rule  # nothing is wrong yet
        # Every dashboard query runs, and the listener's gauges come back with data.
        for where, expr in dashboard_exprs(load_dashboard()):
            promql = grafana_to_promql(expr.replace("$__rate_interval", "1m"))
            result = prometheus.api("query", query=promql)["result"]
            if re.fullmatch(r"(min|max) by \(\w+(, \w+)*\) \(s3s3_\w+\{[^}]*\}\)", expr):
                assert result, f"{where}: {promql} found nothing"

        # The listener gone, S3s3ListenerDown goes pending for its instance (it fires 2m on).
        listener.stop()

        def listener_down():
            alerts = prometheus.api("alerts")["alerts"]
            return [x for x in alerts if x["labels"]["alertname"] == "S3s3ListenerDown"]

        (alert,) = wait_until(listener_down, 60, interval_s=0.5, what="S3s3ListenerDown")
        assert alert["state"] == "pending"
        assert alert["labels"]["instance"] == f"127.0.0.1:{port}"
        assert alert["labels"]["job"] == "s3s3listen"
        assert alert["annotations"]["summary"] == f"s3s3listen at 127.0.0.1:{port} is down"
    finally:
        listener.stop()
        if prometheus is not None:
            prometheus.stop()
