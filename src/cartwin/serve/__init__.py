"""``cartwin serve``: a local web app to design, run and read virtual trials, and to score patients.

A front door like the command line (docs/serve.md): it imports the other rooms thinly. The pieces:
:mod:`~cartwin.serve.forms` (the protocol editor generated from the schema),
:mod:`~cartwin.serve.design` (the checks of ``cartwin validate``), :mod:`~cartwin.serve.jobs` (the
run folder, the queue and the worker processes), :mod:`~cartwin.serve.worker` (one run),
:mod:`~cartwin.serve.read` (what the pages chart and tabulate) and :mod:`~cartwin.serve.app`
(the Starlette application).
"""
