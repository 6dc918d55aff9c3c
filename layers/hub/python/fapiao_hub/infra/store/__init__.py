"""The store: the only code that touches DynamoDB, one module per capability over one base.

``ApplicationStore`` is composed here from the parts (mixins over base.StoreBase: one object with one
set of tables, so the use cases keep a single store to hold and tests a single one to build). Each part
owns one capability; records.py what it hands back, errors.py what a refused write means.
"""

from __future__ import annotations

from fapiao_hub.infra.store.applications import Applications
from fapiao_hub.infra.store.circuits import Circuits
from fapiao_hub.infra.store.counts import Counts
from fapiao_hub.infra.store.findings import Findings
from fapiao_hub.infra.store.listing import Listing
from fapiao_hub.infra.store.polling import DueWork
from fapiao_hub.infra.store.replay import Replay
from fapiao_hub.infra.store.settled import Settled
from fapiao_hub.infra.store.trail import Trail


class ApplicationStore(Applications, Findings, Trail, DueWork, Replay, Circuits, Settled, Listing, Counts):
    """Applications table (template.yaml ApplicationsTable) and the invoices and history tables beside it."""
