"""Channel simulators for tests: real HTTP servers on 127.0.0.1 that behave like a vendor's API.

Each simulator counts what it *issued* so a test can assert the hub's core promise, "never issue
twice" (docs/rules.md section 6), and injects the failures that make issuing ambiguous (timeouts
after the invoice exists, connection resets, unreadable answers). Standard library only: a
simulator must run wherever the tests run, with no extra dependencies.

- :mod:`sandbox.xunlian` - Xunlian ``serverIssue`` (seed 001).
- :mod:`sandbox.partner` - the partner's signed ``queryInvoice`` (seed 003), walking statuses over time.
- :mod:`sandbox.kingdee` - Kingdee ``BILL.PUSH`` / ``BILL.INVOICE.QUERY`` with the base64 envelope (seed 002).
- :mod:`sandbox.pusher` - a client that pushes Ekuaibao-shaped results (seed 000) to a callback URL
  (uses requests: it is a client, not a server).
- :mod:`sandbox.ekuaibao` - Ekuaibao for the local run: applications in out of band, pushes out.
- :mod:`sandbox.faults` - fault switches shared by the simulators, wrong results included
  (``wrong_amount``, ``wrong_seller``, ``wrong_type``, ``extra_invoice``, ``reject_but_issue``).
- :mod:`sandbox.base` - the HTTP plumbing every simulator shares, and :class:`sandbox.base.SavedState`:
  the records a simulator keeps across a restart of the local run (local.state saves and restores them).

Each simulator issues what it was asked: the invoice carries the order's seller, buyer, type, lines
and totals, dated today in China (UTC+8), red (negative) for a red order.
"""
