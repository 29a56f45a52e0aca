"""The bucket job: whole destination buckets brought in step with the source, the engine of
``s3s3bucket`` (and of ``BucketClient`` and ``duplicate_bucket``).

    runner.py       run_bucket_job, sync_buckets: the phases, listing, merge, stop and grace
    options.py      JobOptions: the [bucket] settings of a run and its own flags
    destination.py  Destination: one object per destination (counters, failures, spool)
    sinks.py        where keys go: copied here, added to the stream, or a dry run's report
    deletion.py     spooled deletes, the max_delete_fraction guard, DeleteObjects batches
    pool.py         the worker threads, with back-pressure and the run's stop signals
    summary.py      DestinationSummary, JobSummary, the progress line and its log reporter
    lock.py         the local and Redis locks that keep two runs apart

It must not print or exit (the scripts do), and it reaches the stream only through
:mod:`s3s3.queue.producer`. Importing it makes no connection and reads no configuration.
"""
