"""Accumulation: every contribution to a share key collected, then summed exactly rounded.

Accumulator keys use small ints for account and component (the codes below), shared with the
general path (``rules``) and the fast path (``fast``), which append to the same entries.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from accounting.domain.types import QUALITY_RANK, Account, Component, EnergyShare, Quality

_COMPONENT_ORDER = {component: index for index, component in enumerate(Component)}
_COMPONENTS = list(Component)
_QUALITY_BY_RANK = {rank: quality for quality, rank in QUALITY_RANK.items()}
# Where a contribution's energy goes in its accumulator entry, by the quality rank of the window
# it came from: measured energy apart from the rest (see _Ledger).
_ENERGY_SLOT = tuple(0 if _QUALITY_BY_RANK[rank] is Quality.MEASURED else 3 for rank in range(len(QUALITY_RANK)))

# Accumulator keys use small ints for account and component. Account codes follow the order
# of ``Account.value`` (the output sort order); component codes are _COMPONENT_ORDER.
_ACCOUNTS = sorted(Account, key=lambda account: account.value)
_ACCOUNT_CODE = {account: code for code, account in enumerate(_ACCOUNTS)}
_JOB = _ACCOUNT_CODE[Account.JOB]
_FLEET = _ACCOUNT_CODE[Account.FLEET_OVERHEAD]
_GPU_ACTIVE = _COMPONENT_ORDER[Component.GPU_ACTIVE]
_GPU_IDLE = _COMPONENT_ORDER[Component.GPU_IDLE]
_HOST_CPU = _COMPONENT_ORDER[Component.HOST_CPU]
_HOST_DRAM = _COMPONENT_ORDER[Component.HOST_DRAM]
_HOST_UNMEASURED = _COMPONENT_ORDER[Component.HOST_UNMEASURED]


# (account code, job_id, device_id, component code, hour)
_Key = tuple[int, int | None, int | None, int, datetime]
# An accumulator entry: [measured energies (J), held seconds, worst quality rank, other energies
# (J)]. A list, not a class, because the fast path appends to it by slot index in its inner loop;
# its items differ in type, so its element type is Any.
Entry = list[Any]


class _Ledger:
    """Collects contributions per share key; sums them exactly rounded at the end.

    An entry is ``[energies from measured windows, held seconds, worst quality rank, energies
    from other windows]``: every contribution appends to the held seconds and to one of the two
    energy lists (``_ENERGY_SLOT``), so a share's measured energy is the exact sum of its
    measured windows' contributions, whatever else was attributed with them, and its energy
    the exact sum of both lists (``math.fsum`` is exactly rounded, so splitting changes no bit).
    Entries may be created before anything is added to them (the fast path's sinks); only those
    that received a contribution become shares.
    """

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: dict[_Key, Entry] = {}

    def entry(self, account: int, job_id: int | None, device_id: int | None, component: int, hour: datetime) -> Entry:
        key = (account, job_id, device_id, component, hour)
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = [[], [], -1, []]
        return entry

    def add(
        self,
        account: int,
        job_id: int | None,
        device_id: int | None,
        component: int,
        hour: datetime,
        energy_j: float,
        held_s: float,
        rank: int,
    ) -> None:
        if energy_j == 0.0 and held_s == 0.0:
            return
        entry = self.entry(account, job_id, device_id, component, hour)
        entry[_ENERGY_SLOT[rank]].append(energy_j)
        entry[1].append(held_s)
        if rank > entry[2]:
            entry[2] = rank

    def shares(self, covers: dict[tuple[int, datetime], str]) -> list[EnergyShare]:
        """The shares; a GPU share (one with a device) states ``covers[(device, hour)]``."""
        entries = self._entries
        shares = []
        # Every contribution appended a held-seconds value: a non-empty list marks a used entry.
        for key in sorted((key for key, entry in entries.items() if entry[1]), key=_sort_key):
            measured, held, rank, other = entries[key]
            measured_j = math.fsum(measured)
            shares.append(
                EnergyShare(
                    account=_ACCOUNTS[key[0]],
                    job_id=key[1],
                    device_id=key[2],
                    component=_COMPONENTS[key[3]],
                    hour=key[4],
                    energy_j=math.fsum(measured + other) if other else measured_j,
                    held_s=math.fsum(held),
                    quality=_QUALITY_BY_RANK[rank],
                    measured_energy_j=measured_j,
                    energy_covers="" if key[2] is None else covers[(key[2], key[4])],
                )
            )
        return shares


def _sort_key(key: _Key) -> tuple[datetime, int, bool, int, bool, int, int]:
    account, job_id, device_id, component, hour = key
    return (
        hour,
        account,
        job_id is not None,
        job_id if job_id is not None else 0,
        device_id is not None,
        device_id if device_id is not None else 0,
        component,
    )
