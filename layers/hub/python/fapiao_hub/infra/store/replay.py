"""The replay guard of signed callbacks (usecases/callback_auth.ReplayGuard): a signature seen once.

Kept in the applications table under its own key prefix ("replay#"); DynamoDB's TTL on expires_at
removes it once its timestamp can no longer pass the signature window.
"""

from __future__ import annotations

from fapiao_hub.infra.store.base import Refused, StoreBase, conditional


class Replay(StoreBase):
    """Callback signatures already seen."""

    def first_time(self, key: str, expires_at: int) -> bool:
        """Whether ``key`` is seen for the first time: one conditional write."""
        answer = conditional(
            self._table.put_item,
            Item={"pk": f"replay#{key}", "expires_at": expires_at},
            ConditionExpression="attribute_not_exists(pk)",
        )
        return not isinstance(answer, Refused)
