"""Clock skew between host and server: measured and flagged, never applied (issue 19).

Each batch stores ``clock_offset_s = sent_at - received_at`` (the host clock's offset minus the
transit time); beyond ``TelemetryBatch.CLOCK_SKEW_FLAG_S`` it is flagged and logged. The windows
keep the host's times, so a host's windows stay contiguous across batches whatever the offset;
a window ending beyond the clock-skew allowance in the future is refused as before."""

from __future__ import annotations

import datetime as dt
import logging

import pytest

from accounting.models import ApiToken
from accounting.tokens import token_create
from telemetry.models import TelemetryBatch
from tests.factories import DeviceFactory, HostFactory
from tests.telemetry.helpers import batch, gpu_entry, iso, post_batch, window

pytestmark = pytest.mark.django_db


def test_the_offset_is_stored_and_beyond_the_threshold_flagged_but_window_times_are_kept(client, caplog):
    host = HostFactory()
    device = DeviceFactory(host=host, index=0)
    secret = token_create(org=host.cluster.site.org, name="agent", scope=ApiToken.Scope.HOST, host=host).secret
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=30)
    sent = []
    for seq, ahead_s in [(1, 0.0), (2, 40.0), (3, -90.0), (4, None)]:
        payload = batch(
            hostname=host.hostname,
            windows=[
                window(seq=seq, start=start + dt.timedelta(seconds=10 * seq), gpus=[gpu_entry(uuid_=device.uuid)])
            ],
        )
        if ahead_s is None:
            del payload["sent_at"]
        else:
            payload["sent_at"] = iso(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=ahead_s))
        with caplog.at_level(logging.WARNING, logger="telemetry.services"):
            assert post_batch(client, secret, payload).status_code == 202
        sent.append((seq, ahead_s))
    rows = {b.first_seq: b for b in TelemetryBatch.objects.filter(host=host)}
    assert abs(rows[1].clock_offset_s) < TelemetryBatch.CLOCK_SKEW_FLAG_S and not rows[1].clock_skew_flagged
    assert rows[2].clock_offset_s == pytest.approx(40.0, abs=1.0) and rows[2].clock_skew_flagged
    assert rows[3].clock_offset_s == pytest.approx(-90.0, abs=1.0) and rows[3].clock_skew_flagged
    assert rows[4].clock_offset_s is None and not rows[4].clock_skew_flagged
    # Host times kept as sent: window 2 starts where window 1 ended, skew or not.
    for seq, _ in sent:
        assert rows[seq].first_start == start + dt.timedelta(seconds=10 * seq)
    flagged = [r.getMessage() for r in caplog.records if "clock skew" in r.getMessage()]
    assert len(flagged) == 2 and f"host={host.hostname}" in flagged[0]
