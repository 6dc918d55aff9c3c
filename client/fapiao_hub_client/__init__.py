"""The fapiao-hub command and its demo: a client of the hub's HTTP API, installed with the project
(``pip install -e .``), never shipped in the Lambda layer (which carries runtime code only)."""
