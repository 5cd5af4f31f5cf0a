"""The job page's what-if form refuses physically impossible input (issue 19): a 1 W power cap
for an H100 shows the API's message beside the cap field and projects nothing."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from accounting import models as m
from tests import factories as f
from tests.dashboard.test_browser import CHROMIUM, browser_page  # noqa: F401 - the fixture

pytestmark = [pytest.mark.browser, pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is absent")]
UTC = dt.UTC


@pytest.mark.django_db(transaction=True)
def test_a_1_w_cap_is_shown_beside_the_field_and_nothing_is_projected(live_server, browser_page):  # noqa: F811
    org = f.OrganizationFactory()
    zone = f.GridZoneFactory(code="ZZ-FORM", annual_intensity_g_per_kwh=400.0)
    cluster = f.ClusterFactory(site=f.SiteFactory(org=org, zone=zone, pue=1.5))
    host = f.HostFactory(cluster=cluster)
    a100 = f.HardwareModelFactory(key="a100-sxm4-80gb", name="A100", idle_power_w=55.0, max_power_w=400.0)
    f.HardwareModelFactory(key="h100-sxm5-80gb", name="H100 SXM5 80GB")
    team = f.TeamFactory(org=org)
    start = dt.datetime(2026, 11, 1, tzinfo=UTC)
    job = f.JobFactory(
        cluster=cluster,
        team=team,
        status=m.Job.Status.COMPLETED,
        started_at=start,
        ended_at=start + dt.timedelta(hours=10),
        model_meta={"precision": "bf16"},
    )
    for _ in range(4):
        f.JobAllocationFactory(
            job=job, device=f.DeviceFactory(host=host, hardware_model=a100), start=job.started_at, end=job.ended_at
        )
    m.JobFootprint.objects.create(
        job=job, gpu_energy_j=4 * 300.0 * 36000, energy_j=4 * 300.0 * 36000, device_hours=40.0, is_final=True
    )
    user = f.UserFactory(username="form-user")
    f.MembershipFactory(user=user, org=org, team=team)

    page, base = browser_page, live_server.url
    page.goto(f"{base}/accounts/login/?next=/jobs/{job.pk}/")
    page.fill("#id_username", "form-user")
    page.fill("#id_password", "correct-horse-battery")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(rf".*/jobs/{job.pk}/$"))
    page.select_option("#whatif-project select[name=target_key]", "h100-sxm5-80gb")
    page.fill("#whatif-project input[name=target_power_cap_w]", "1")
    page.click("#whatif-project button[type=submit]")
    page.wait_for_selector("#whatif-project .field-error", timeout=20_000)
    note = page.locator('#whatif-project .field-error[data-error-for="target_power_cap_w"]')
    assert note.inner_text() == "must be between 200 and 700 W for H100 SXM5 80GB (its enforceable power-limit range)"
    assert page.get_attribute("#whatif-project input[name=target_power_cap_w]", "aria-invalid") == "true"
    assert page.locator("#whatif-project-result table").count() == 0  # nothing projected
    alert = page.locator("#whatif-project-result .alert.error").inner_text()
    assert "target_power_cap_w" in alert
    assert alert.count("must be between 200 and 700 W") == 1, alert  # the problem's detail and errors, once

    # A cap the device enforces clears the note and projects.
    page.fill("#whatif-project input[name=target_power_cap_w]", "350")
    page.click("#whatif-project button[type=submit]")
    page.wait_for_selector("#whatif-project-result table", timeout=20_000)
    assert page.locator("#whatif-project .field-error").count() == 0
    assert [e for e in page.errors if "status of 400" not in e] == []
