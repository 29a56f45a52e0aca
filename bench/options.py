"""``python -m bench options``: client CPU per 4 KiB copy for each way s3s3 could send it.

The small-object race is won on client CPU per copy (GET + PUT), so each option is
measured in one process, on the same RGW and objects, interleaved (A B C D A B C D):

- plain boto3: ``get_object`` then ``put_object`` (payload signing off, checksums when
  required), what a script would do;
- s3s3 with ``data_path = botocore``: the copy engine on boto3 clients;
- s3s3's lean path (``s3s3.store.lean``) signed by botocore's own ``S3SigV4Auth`` on an
  ``AWSRequest``, as the lean path first was;
- s3s3's lean path signed by ``s3s3.store.signing``, the default.

Each copies the same objects (``--objects``, default 3,000) with 32 threads into a new
bucket; CPU is ``getrusage`` (user + system) around the copy loop only, so start-up and
listing are left out. Writes ``bench/results/options-DATE.md``.
"""

from __future__ import annotations

import dataclasses
import resource
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .paths import RESULTS_DIR

THREADS = 32


def _lean_with_botocore_signers():
    """``LeanStore._sign`` as it was before s3s3.store.signing: botocore's signers."""
    import botocore.auth
    import botocore.config
    from botocore.awsrequest import AWSRequest

    from s3s3.store import lean

    unsigned = botocore.config.Config(s3={"payload_signing_enabled": False})

    def sign(self, method, target, headers, auth_path, *, op, key):
        creds = self._credentials.get_frozen_credentials()
        headers["Host"] = self._host
        request = AWSRequest(method=method, url=self._origin + target, headers=headers)
        request.context["client_config"] = unsigned
        botocore.auth.S3SigV4Auth(creds, "s3", self._region).add_auth(request)
        signed = dict(request.headers.items())
        signed["User-Agent"] = lean.USER_AGENT
        return signed

    return sign


def _plain_boto3(site, src_bucket: str, dst_bucket: str):
    import boto3
    import botocore.config

    cfg = botocore.config.Config(
        max_pool_connections=64,
        s3={"payload_signing_enabled": False, "addressing_style": "path"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=site.url,
        aws_access_key_id=site.access_key,
        aws_secret_access_key=site.secret_key,
        region_name=site.region,
        config=cfg,
    )

    def one(info):
        body = client.get_object(Bucket=src_bucket, Key=info.key)["Body"].read()
        client.put_object(Bucket=dst_bucket, Key=info.key, Body=body)

    return one


def measure(site, src_bucket: str, keys: int, runs: int, new_bucket, log) -> dict:
    from s3s3.config import EndpointConfig
    from s3s3.listing import list_objects
    from s3s3.store.endpoint import Endpoint
    from s3s3.store.lean import LeanStore
    from s3s3.transfer import copy_object

    base = EndpointConfig(
        name="source",
        bucket=src_bucket,
        endpoint_url=site.url,
        region=site.region,
        access_key=site.access_key,
        secret_key=site.secret_key,
    )
    infos = [info for _, info in zip(range(keys + 1), list_objects(Endpoint(base)), strict=False)]
    s3s3_sign = LeanStore._sign
    botocore_sign = _lean_with_botocore_signers()

    def s3s3_copier(data_path: str, sign):
        def make(dst_bucket: str):
            LeanStore._sign = sign
            src = Endpoint(dataclasses.replace(base, data_path=data_path))
            dst = Endpoint(
                dataclasses.replace(base, name="dest", bucket=dst_bucket, data_path=data_path)
            )
            return lambda info: copy_object(src, dst, info.key, force=True, src_info=info)

        return make

    options = {
        "plain boto3 (get_object + put_object)": lambda dst: _plain_boto3(site, src_bucket, dst),
        "s3s3, data_path = botocore": s3s3_copier("botocore", s3s3_sign),
        "s3s3 lean path, botocore's S3SigV4Auth": s3s3_copier("raw", botocore_sign),
        "s3s3 lean path, s3s3.store.signing (default)": s3s3_copier("raw", s3s3_sign),
    }
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in options}
    try:
        for run in range(runs):
            for name, make in options.items():
                one = make(
                    new_bucket(f"opt-{run}-{len(results[name])}-{list(options).index(name)}")
                )
                one(infos[0])  # connections and models are made before the clock starts
                before = resource.getrusage(resource.RUSAGE_SELF)
                began = time.perf_counter()
                with ThreadPoolExecutor(THREADS) as pool:
                    list(pool.map(one, infos[1:]))
                wall = time.perf_counter() - began
                after = resource.getrusage(resource.RUSAGE_SELF)
                cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
                n = len(infos) - 1
                results[name].append((cpu / n * 1000, n / wall))
                log(f"  run {run} {name:42s} {cpu / n * 1000:.3f} ms/copy  {n / wall:.0f} copies/s")
    finally:
        LeanStore._sign = s3s3_sign
    return results


def render(results: dict, *, keys: int, runs: int, date: str, server: str) -> str:
    lines = [
        f"Client CPU per 4 KiB copy (GET + PUT), {keys:,} objects x {runs} interleaved "
        f"runs, {THREADS} threads, one process, {server} ({date}; "
        "`python -m bench options`). CPU is getrusage around the copy loop only.",
        "",
        "| option | client CPU ms per copy, median (min-max) | copies/s, median |",
        "|---|---|---|",
    ]
    for name, rows in results.items():
        cpus = [c for c, _ in rows]
        rates = [r for _, r in rows]
        lines.append(
            f"| {name} | {statistics.median(cpus):.2f} ({min(cpus):.2f}-"
            f"{max(cpus):.2f}) | {statistics.median(rates):,.0f} |"
        )
    return "\n".join(lines) + "\n"


def options(args, *, run_dir: Path, log) -> int:
    from . import data
    from .context import Context, Sizes
    from .install import ensure_tools
    from .servers import start_server

    sizes = Sizes.quick() if args.quick else Sizes()
    keys = args.objects or 3000
    runs = args.runs or (1 if args.quick else 3)
    server = start_server(force_moto=args.moto, log=log)
    ctx = Context(
        server=server,
        run_dir=run_dir,
        sizes=sizes,
        runs=runs,
        log=log,
        tools_bin=ensure_tools(log=log),
    )
    try:
        ds = data.make_small(ctx, "options", keys + 1, sizes.small_bytes)

        def new_bucket(name: str) -> str:
            data.create_bucket(ctx, name)
            return name

        results = measure(server.src, ds.bucket, keys, runs, new_bucket, log)
    finally:
        data.clear_local()
        server.stop()
    date = time.strftime("%Y-%m-%d")
    text = render(results, keys=keys, runs=runs, date=date, server=server.version)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"options-{date}{'-quick' if args.quick else ''}.md"
    out.write_text(f"# Ways to send a small copy, {date}\n\n{text}")
    print(text)
    log(f"options: {out}")
    return 0
