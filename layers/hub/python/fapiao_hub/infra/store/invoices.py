"""Invoices (template.yaml InvoicesTable): those a channel issued for an application, results kept
unmatched until an application owns them, and the red ledger (what a blue invoice has left to reverse);
and the application item's own marks of its invoices (their keys, files still to fetch).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from fapiao_hub.domain.models import Direction

# Every item written from outside input passes storable_tree: a number DynamoDB cannot keep is
# written as its text rather than fail the write (channel modules mark such fields unreadable first).
from fapiao_hub.domain.number_range import storable_tree
from fapiao_hub.infra.store.base import Refused, StoreBase, batch_get, conditional
from fapiao_hub.infra.store.errors import (
    BlueInvoiceTypeDiffers,
    BlueInvoiceUnknown,
    InvoiceNumberTaken,
    RedLimitExceeded,
)
from fapiao_hub.infra.store.records import StoredApplication


class Invoices(StoreBase):
    """Invoices, unmatched results and the red ledger."""

    def record_invoices(self, application_pk: str, invoices: list[dict[str, Any]]) -> None:
        """Record the invoices a channel issued for an application, before the application moves on.

        Written first so that a result, once heard, is never lost: if the dispatcher dies before
        the application's transition, the invoice is already on record and the next delivery
        finishes the job. Idempotent for the same application; an invoice number recorded for
        another application raises InvoiceNumberTaken.
        """
        table = self._table.meta.client  # the resource's client: it takes plain Python values
        taken: dict[str, str] = {}
        for invoice in invoices:
            answer = conditional(
                table.put_item,
                TableName=self._invoices_table_name,
                Item=storable_tree(invoice),
                # Free, unmatched (reported before its application was known), or already ours.
                ConditionExpression="attribute_not_exists(pk) OR attribute_not_exists(application_key) "
                "OR application_key = :app",
                ExpressionAttributeValues={":app": application_pk},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",  # who holds it: the finding names it
            )
            if isinstance(answer, Refused):
                taken[invoice["pk"]] = str((answer.item or {}).get("application_key") or "")
        if taken:
            raise InvoiceNumberTaken(list(taken), taken)

    def invoices(self, stored: StoredApplication) -> list[dict[str, Any]]:
        """The invoices recorded for an application, in the order they were issued."""
        if not stored.invoice_keys:
            return []
        client = self._table.meta.client
        items = batch_get(client, self._invoices_table_name, list(stored.invoice_keys), ConsistentRead=True)
        found = {item["pk"]: item for item in items}
        return [found[key] for key in stored.invoice_keys if key in found]

    def invoice(self, invoice_pk: str) -> dict[str, Any] | None:
        answer = self._table.meta.client.get_item(
            TableName=self._invoices_table_name, Key={"pk": invoice_pk}, ConsistentRead=True
        )
        return answer.get("Item")

    def update_invoice(self, invoice_pk: str, changes: dict[str, Any]) -> None:
        """Facts learnt about a recorded invoice later (its files, its state)."""
        names = {f"#f{i}": k for i, k in enumerate(changes)}
        self._table.meta.client.update_item(
            TableName=self._invoices_table_name,
            Key={"pk": invoice_pk},
            UpdateExpression="SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(changes))),
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues={f":v{i}": storable_tree(v) for i, v in enumerate(changes.values())},
        )

    def add_invoice_keys(self, stored: StoredApplication, keys: list[str]) -> None:
        self._table.update_item(
            Key={"pk": stored.key},
            UpdateExpression="SET invoice_keys = list_append(if_not_exists(invoice_keys, :empty), :keys)",
            ExpressionAttributeValues={":keys": keys, ":empty": []},
        )

    def mark_files_pending(self, application_pk: str, pending: bool) -> None:
        if pending:
            self._table.update_item(
                Key={"pk": application_pk},
                UpdateExpression="SET files_pending = :t",
                ExpressionAttributeValues={":t": True},
            )
        else:
            self._table.update_item(Key={"pk": application_pk}, UpdateExpression="REMOVE files_pending")

    # ------------------------------------------------------------------ results for no known application
    def record_unmatched(self, invoices: list[dict[str, Any]]) -> list[str]:
        """Invoices a channel reported for no application the hub knows: kept, never dropped.

        An application that later turns out to own one takes it over (record_invoices allows it).
        """
        kept = []
        client = self._table.meta.client
        for invoice in invoices:
            answer = conditional(
                client.put_item,
                TableName=self._invoices_table_name,
                Item=storable_tree({**invoice, "unmatched": True}),
                ConditionExpression="attribute_not_exists(pk) OR attribute_not_exists(application_key)",
            )
            if not isinstance(answer, Refused):
                kept.append(invoice["pk"])
        return kept

    def restore_unmatched(self, item: dict[str, Any], application_pk: str) -> None:
        """Put an unmatched result back as it was, if an operator's attach-result took it for an
        application and then lost its race (the application moved): it stays to be attached again."""
        conditional(
            self._table.meta.client.put_item,
            TableName=self._invoices_table_name,
            Item=storable_tree(item),
            ConditionExpression="attribute_not_exists(pk) OR application_key = :app",
            ExpressionAttributeValues={":app": application_pk},
        )

    # ------------------------------------------------------------------ the red ledger
    def reserve_red(
        self,
        blue_pk: str,
        amount: Decimal,
        tax: Decimal,
        *,
        source_system: str,
        seller_tax_number: str,
        invoice_types: tuple[str, ...],
    ) -> None:
        """Take a red application's (positive) amount and tax from what its blue invoice has left.

        One conditional write, which is also the ownership check: the blue invoice must have been
        issued for ``source_system`` and ``seller_tax_number``, be of one of ``invoice_types``, and
        have at least the amount and the tax left; concurrent red applications can never together
        exceed it. On failure the item as it was (handed back by the failed write, no second read)
        says why: BlueInvoiceUnknown (absent, or not this owner's: the same answer),
        BlueInvoiceTypeDiffers, or RedLimitExceeded with the owner's figures left.
        """

        def refused(blue: dict[str, Any] | None) -> Exception:
            if (
                blue is None
                or blue.get("source_system") != source_system
                or blue.get("seller_tax_number") != seller_tax_number
                or blue.get("direction") != Direction.BLUE.value
                or "red_remaining_amount" not in blue
            ):
                return BlueInvoiceUnknown(blue_pk)
            if blue.get("invoice_type") not in invoice_types:
                return BlueInvoiceTypeDiffers(str(blue.get("invoice_type")))
            return RedLimitExceeded(
                Decimal(str(blue.get("red_remaining_amount", 0))), Decimal(str(blue.get("red_remaining_tax", 0)))
            )

        conditional(
            self._table.meta.client.update_item,
            refused=refused,
            TableName=self._invoices_table_name,
            Key={"pk": blue_pk},
            UpdateExpression="SET red_remaining_amount = red_remaining_amount - :a, "
            "red_remaining_tax = red_remaining_tax - :t",
            ConditionExpression="source_system = :system AND seller_tax_number = :seller "
            "AND direction = :blue AND invoice_type IN ("
            + ", ".join(f":type{i}" for i in range(len(invoice_types)))
            + ") AND red_remaining_amount >= :a AND red_remaining_tax >= :t",
            ExpressionAttributeValues={
                ":a": amount,
                ":t": tax,
                ":system": source_system,
                ":seller": seller_tax_number,
                ":blue": Direction.BLUE.value,
                **{f":type{i}": value for i, value in enumerate(invoice_types)},
            },
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )

    def release_red(self, blue_pk: str, amount: Decimal, tax: Decimal) -> None:
        """Give a red application's reservation back (it was rejected, or never stored)."""
        self._table.meta.client.update_item(
            TableName=self._invoices_table_name,
            Key={"pk": blue_pk},
            UpdateExpression="SET red_remaining_amount = red_remaining_amount + :a, "
            "red_remaining_tax = red_remaining_tax + :t",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues={":a": amount, ":t": tax},
        )
