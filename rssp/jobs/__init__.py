"""Asynchronous signing jobs (CSC ``operationMode: "A"`` and ``signatures/signPolling``).

A request in asynchronous mode is checked and its SAD spent at once, exactly as in
synchronous mode; what is left to do (sign, build documents) is stored as a job row in the
database, in the same transaction as the spend. Any worker process of any host that shares
the database may run it (:mod:`rssp.jobs.runner`); the result is kept for the job's validity
period only and shown only to the user (and OAuth client) that asked (:mod:`rssp.jobs.store`).
What a job does is a registered kind (:mod:`rssp.jobs.kinds`).

This package imports nothing at import time: :mod:`rssp.config` uses :mod:`rssp.jobs.callback`.
"""
