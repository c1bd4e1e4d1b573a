"""Background work: a tiny task registry, Dramatiq brokers chosen by settings, the
in-process or standalone worker, and the sweeper that recovers lost messages.

The database holds every job's truth; a queue message only wakes a worker.
"""
