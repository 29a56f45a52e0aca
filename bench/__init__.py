"""s3s3's benchmark harness: s3s3 against the tools users would pick instead, in one run.

``python -m bench`` starts its own Ceph RGW, installs the peers (rclone, the 2015 s3s3, a plain
boto3 copier, s5cmd for the server's ceiling), runs every workload several times with the
tools interleaved, verifies every copy, and writes a markdown table, a JSON file of every run
and a PNG plot to ``bench/results/``. See ``bench/README.md``.

Layout:

- :mod:`bench.paths` — where things live (``bench/work/`` is the git-ignored cache);
- :mod:`bench.servers` — the RGW (or the marked moto fallback), its access log, admin calls;
- :mod:`bench.data` — the source data sets and the verification of every copy;
- :mod:`bench.measure` — running one tool under ``/usr/bin/time``: wall, CPU, peak RSS;
- :mod:`bench.peers` — one module per tool: how it is installed and how it is invoked;
- :mod:`bench.workloads` — W1-W6 (bucket copies, no-op re-run, planning);
- :mod:`bench.listener` — W7 (the listeners: sustained rate and latency);
- :mod:`bench.report` — statistics, the markdown table, the README section; :mod:`bench.plot`;
- :mod:`bench.profile` — ``python -m bench profile``: s3s3bucket on W2 under py-spy.
"""
