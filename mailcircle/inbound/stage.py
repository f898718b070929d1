"""What each stage of the pipeline works with: the database, the clock, the composer and the
sender checks (who may act, how much the circle answers)."""

from __future__ import annotations

from sqlite_utils import Database

from mailcircle.clock import Clock
from mailcircle.inbound.senders import Senders
from mailcircle.outbound import compose


class Stage:
    def __init__(
        self, db: Database, clock: Clock, composer: compose.Composer, senders: Senders
    ) -> None:
        self.db = db
        self.clock = clock
        self.composer = composer
        self.senders = senders
