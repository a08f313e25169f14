"""The one-slot mailbox between the capture and inference threads: latest frame wins."""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class MailboxClosed(Exception):
    pass


class Mailbox(Generic[T]):
    """One slot. `put` replaces what is there (counting it as dropped) or, with `wait`, blocks
    until the reader has taken it; `get` blocks for the next item. After `close`, `get` returns
    what is left, then raises MailboxClosed."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._full = False
        self._closed = False
        self.dropped = 0

    def put(self, item: T, wait: bool = False) -> None:
        with self._cond:
            while wait and self._full and not self._closed:
                self._cond.wait(0.1)
            if self._closed:
                return
            if self._full:
                self.dropped += 1
            self._item, self._full = item, True
            self._cond.notify_all()

    def wait_empty(self) -> None:
        """Block until the reader has taken the item (or the mailbox is closed)."""
        with self._cond:
            while self._full and not self._closed:
                self._cond.wait(0.1)

    def get(self, timeout: float | None = None) -> T | None:
        """The item, or None after `timeout` seconds with nothing to take."""
        with self._cond:
            if not self._full and not self._closed:
                self._cond.wait(timeout)
            if self._full:
                item, self._item, self._full = self._item, None, False
                self._cond.notify_all()
                return item
            if self._closed:
                raise MailboxClosed
            return None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
