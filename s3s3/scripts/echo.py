"""``echo_s3s3_ini_template``, ``echo_s3s3_supervisord_conf``, ``echo_s3s3_alert_rules`` and
``echo_s3s3_grafana_dashboard``: print shipped files."""

from __future__ import annotations

import argparse
import sys
import sysconfig
from importlib import resources
from pathlib import Path


def _data(name: str) -> str:
    return resources.files("s3s3.data").joinpath(name).read_text(encoding="utf-8")


def ini_template(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(
        prog="echo_s3s3_ini_template", description="Print the s3s3.ini template."
    ).parse_args(argv)
    sys.stdout.write(_data("s3s3.ini.dist"))
    return 0


def supervisord_conf(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="echo_s3s3_supervisord_conf",
        description="Print a supervisord configuration for s3s3listen and an hourly "
        "s3s3bucket, pointing at the scripts of this installation.",
    )
    p.add_argument("--config", default="/usr/local/etc/s3s3.ini", help="the INI path to use")
    p.add_argument("--logdir", default="/var/log/s3s3", help="where supervisord writes logs")
    p.add_argument(
        "--bindir",
        default=None,
        help="where s3s3listen and s3s3bucket are (default: this installation's scripts folder)",
    )
    args = p.parse_args(argv)
    bindir = args.bindir or _scripts_dir()
    sys.stdout.write(
        _data("supervisord.conf").format(bindir=bindir, config=args.config, logdir=args.logdir)
    )
    return 0


def alert_rules(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="echo_s3s3_alert_rules",
        description="Print the Prometheus alerting rules for s3s3 (rule_files: of prometheus.yml). "
        "Save them as s3s3-alerts.yml; with --tests, print their promtool unit tests, to save "
        "beside them as s3s3-alerts.test.yml for `promtool test rules`.",
    )
    p.add_argument(
        "--tests", action="store_true", help="print the rules' promtool unit tests instead"
    )
    args = p.parse_args(argv)
    sys.stdout.write(_data("s3s3-alerts.test.yml" if args.tests else "s3s3-alerts.yml"))
    return 0


def grafana_dashboard(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(
        prog="echo_s3s3_grafana_dashboard",
        description="Print the Grafana dashboard for s3s3 (JSON: import it, or provision it; "
        "it asks for a Prometheus data source).",
    ).parse_args(argv)
    sys.stdout.write(_data("s3s3-dashboard.json"))
    return 0


def _scripts_dir() -> str:
    """The folder holding this installation's console scripts (a venv's bin, usually)."""
    here = Path(sys.argv[0]).resolve().parent if sys.argv and sys.argv[0] else None
    if here is not None and (here / "s3s3bucket").exists():
        return str(here)
    return sysconfig.get_path("scripts")


if __name__ == "__main__":
    sys.exit(ini_template())
