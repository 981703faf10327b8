"""The command line: thin modules that parse, call one library function and report (``--json``,
``--quiet``, exit codes at one boundary in :mod:`~streamproc.cli.common`)."""
