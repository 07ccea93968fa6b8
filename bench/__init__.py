"""certpoll's benchmark suite: ``python -m bench [--quick] [--out docs]`` (``make bench``).

One module per workload (:mod:`bench.overhead`, :mod:`bench.scale`, :mod:`bench.storm`,
:mod:`bench.ratelimit`, :mod:`bench.peers`); :mod:`bench.report` writes
``docs/benchmarks.md`` and its plots. Not part of ``make test``; ``tests/test_bench.py`` runs
every workload with tiny sizes so that the suite cannot rot.
"""
