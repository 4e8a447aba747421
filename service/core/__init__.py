"""The core: what happens to an alert between its source and its sink, without I/O of its own.

``processing`` (decode, route, score records), ``routing`` (rows per top-level class),
``batching`` (the micro-batcher), ``inference`` (models in a worker process or inline),
``offsets`` (at-least-once bookkeeping) and ``engine`` (the one loop every command runs).
"""
