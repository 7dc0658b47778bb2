"""The ``weirflow`` command line: ``run``, ``validate`` and ``demo``.

Built with typer; the console script is ``weirflow = weirflow.cli.app:main`` and
``python -m weirflow`` is the same command. Nothing here is on the data path: the
CLI loads a flow, starts a job with ``wf.Engine`` and reports the ``JobResult``.
"""
