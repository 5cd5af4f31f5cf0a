"""accounting.services.inventory: what ingest learns of a host and its GPUs, from the API's token
lookup (one statement with the token) or from its own query, and the registration of new GPUs."""

from __future__ import annotations

import pytest

from accounting.models import ApiToken, Device, TokenHost
from accounting.services.allocations import pending_device_uuid
from accounting.services.inventory import IngestInventory, ReportedGpu, devices_register, ingest_inventory
from accounting.tokens import token_create, token_lookup
from tests.factories import DeviceFactory, HostFactory

pytestmark = pytest.mark.django_db


def _host_token(host) -> tuple[ApiToken, ApiToken]:
    """The same host token twice: as the API's lookup returns it, and as a plain model row."""
    issued = token_create(org=host.cluster.site.org, name="agent", scope=ApiToken.Scope.HOST, host=host)
    looked_up = token_lookup(raw=issued.secret)
    assert looked_up is not None
    return looked_up, ApiToken.objects.get(pk=looked_up.pk)


def test_the_token_lookup_carries_its_hosts_name_and_every_device():
    host = HostFactory(hostname="gpu-7")
    a, b = DeviceFactory(host=host, index=0), DeviceFactory(host=host, index=1)
    DeviceFactory(host=HostFactory(cluster=host.cluster), index=0)  # another host's
    looked_up, _ = _host_token(host)
    assert looked_up.token_host == TokenHost("gpu-7", {a.uuid: a.pk, b.uuid: b.pk})


def test_only_host_tokens_carry_a_host():
    host = HostFactory()
    issued = token_create(org=host.cluster.site.org, name="admin", scope=ApiToken.Scope.ADMIN)
    token = token_lookup(raw=issued.secret)
    assert token is not None and token.token_host is None


def test_a_host_without_devices_carries_an_empty_map():
    host = HostFactory(hostname="bare")
    looked_up, _ = _host_token(host)
    assert looked_up.token_host == TokenHost("bare", {})


def test_both_ways_give_the_known_devices_and_only_the_query_names_a_foreign_one():
    host = HostFactory(hostname="gpu-7")
    mine = DeviceFactory(host=host, index=0)
    theirs = DeviceFactory(host=HostFactory(cluster=host.cluster), index=0)
    uuids = [mine.uuid, theirs.uuid, "GPU-new"]
    looked_up, plain = _host_token(host)
    assert ingest_inventory(token=looked_up, uuids=uuids) == IngestInventory("gpu-7", {mine.uuid: mine.pk}, ())
    # The query tells a foreign device from a new one; from the token's map both are just unknown
    # (ingest then asks devices_register, under the host's lock, which refuses the foreign one).
    assert ingest_inventory(token=plain, uuids=uuids) == IngestInventory("gpu-7", {mine.uuid: mine.pk}, (theirs.uuid,))
    assert not ingest_inventory(token=looked_up, uuids=uuids).complete(uuids)
    assert ingest_inventory(token=looked_up, uuids=[mine.uuid]).complete([mine.uuid])


def test_registration_refuses_a_foreign_device_and_registers_nothing():
    host = HostFactory()
    theirs = DeviceFactory(host=HostFactory(cluster=host.cluster), index=0)
    before = Device.objects.count()
    gpus = [ReportedGpu("GPU-new", 1, "NVIDIA H100 80GB HBM3"), ReportedGpu(theirs.uuid, 0, "NVIDIA H100 80GB HBM3")]
    assert devices_register(host_id=host.pk, hostname=host.hostname, gpus=gpus) == ({}, (theirs.uuid,))
    assert Device.objects.count() == before


def test_registration_binds_the_schedulers_placeholder_and_creates_the_rest():
    host = HostFactory()
    placeholder = Device.objects.create(host=host, uuid=pending_device_uuid(host_id=host.pk, index=3), index=3)
    gpus = [ReportedGpu("GPU-three", 3, "NVIDIA H100 80GB HBM3"), ReportedGpu("GPU-four", 4, "Unknown GPU 9000")]
    ids, foreign = devices_register(host_id=host.pk, hostname=host.hostname, gpus=gpus)
    four = Device.objects.get(uuid="GPU-four")
    assert (ids, foreign) == ({"GPU-three": placeholder.pk, "GPU-four": four.pk}, ())
    placeholder.refresh_from_db()
    assert (placeholder.uuid, placeholder.reported_name) == ("GPU-three", "NVIDIA H100 80GB HBM3")
    assert (four.host_id, four.index, four.hardware_model_id) == (host.pk, 4, None)  # unknown name: no model
