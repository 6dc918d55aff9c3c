"""fapiao-hub benchmarks (``make bench``, ``python -m bench``): figures for docs/benchmarks.md.

Sections (each runs in its own subprocess so one's state never colours another's timing):

- ``requests``:   AWS requests per issued invoice on the local run, by flow, service and operation,
                  next to the floor (bench.flows, bench.floors); the cost per million invoices
                  built from them (bench.cost)
- ``coldstart``:  import-plus-init time of each handler in a fresh process vs boto3 alone
- ``warm``:       per-request time of the intake handler vs the same AWS calls made bare
- ``polling``:    one poller run against 1,000 vs 100,000 stored applications (50 due)
- ``reconciliation``, ``listing``, ``batch``: the reconciliation run, the operations desk's list and
                  intake's batch route, counted the same way (one function's handler under moto,
                  set up by bench.setup)
- ``throughput``: BENCH_ORDERS orders (default 2,000) by 8 clients through the local run

``make soak`` (bench.soak) is the load test with faults; its tallies go into the same document.
Nothing here asserts on timing: the figures are printed and written with their targets.
"""
