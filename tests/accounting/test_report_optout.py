"""Self-service opt-out of the monthly report e-mails (issue 14 follow-up): every message
carries its recipient's signed unsubscribe link (text, HTML, List-Unsubscribe with RFC 8058
one-click), the link works once without a login, a forged or expired link changes nothing, a
signed-in user opts in and out per team on the reports page, and the next run skips the
address. Every change goes through report_scope_opt_out_set (audited)."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.conf import settings
from django.core import mail, signing
from django.test import Client

from accounting import models as m
from accounting.domain.errors import StateError
from accounting.reports.message import UNSUBSCRIBE_SLOT
from accounting.reports.render import report_html
from accounting.selectors import report_deliveries as sel
from accounting.services import report_delivery as svc
from tests.accounting.report_delivery_world import KWH, MONTH, SEND_AT, world_build

pytestmark = pytest.mark.django_db
UTC = dt.UTC
Status = m.ReportDelivery.Status
LINK = re.compile(r"(https?://\S+/reports/unsubscribe/[^/\s\"<>]+/)")


@pytest.fixture
def world():
    return world_build()


def _send_all(world, now=SEND_AT, month=MONTH):
    for scope in svc.report_month_plan(org_id=world.org.id, month=month, now=now):
        svc.report_scope_deliver(org_id=world.org.id, team_id=scope, month=month, now=now)


def _message_to(address):
    return next(x for x in mail.outbox if x.to == [address])


def _path(url: str) -> str:
    assert url.startswith(settings.REPORTS_DASHBOARD_URL)
    return url.removeprefix(settings.REPORTS_DASHBOARD_URL)


def _state():
    """Everything an unsubscribe request may change."""
    return (
        sorted(m.ReportScopeOptOut.objects.values_list("org_id", "team_id", "email", "via")),
        sorted(m.ReportDelivery.objects.exclude(unsubscribed_at=None).values_list("recipient", flat=True)),
        m.AuditEvent.objects.count(),
    )


def test_every_message_carries_its_recipients_own_link_in_text_html_and_headers(world):
    _send_all(world)
    links = {}
    for msg in mail.outbox:
        row = m.ReportDelivery.objects.get(recipient=msg.to[0])
        header = msg.extra_headers["List-Unsubscribe"]
        url = header.removeprefix("<").removesuffix(">")
        token = _path(url).removeprefix("/reports/unsubscribe/").removesuffix("/")
        assert url == f"{settings.REPORTS_DASHBOARD_URL}/reports/unsubscribe/{token}/"
        assert signing.loads(token, salt=svc.UNSUBSCRIBE_SALT) == {"d": row.pk}
        assert row.recipient not in url and "acme" not in signing.b64_decode(token.split(":")[0].encode()).decode()
        assert msg.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert LINK.findall(msg.body) == [url]
        html = msg.alternatives[0].content
        assert LINK.findall(html) == [url]
        assert UNSUBSCRIBE_SLOT not in msg.body and UNSUBSCRIBE_SLOT not in html
        # The header is in the MIME message as sent (one line per RFC 2369, folded or not).
        raw = msg.message()
        assert raw["List-Unsubscribe"].replace("\n", "").replace(" ", "") == f"<{url}>"
        assert raw["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert msg.attachments[1][1].startswith(b"%PDF-")
        links[msg.to[0]] = url
    assert len(set(links.values())) == 7
    # The PDF is shared by every recipient of a report: its HTML carries no one's link.
    report = svc.report_build(org_id=world.org.id, team_id=world.alpha.id, month=MONTH, now=SEND_AT)
    assert "nsubscribe" not in report_html(report, for_email=False, unsubscribe_url="https://x.test/u/")
    assert "https://x.test/u/" in report_html(report, for_email=True, unsubscribe_url="https://x.test/u/")


def test_the_link_asks_then_unsubscribes_once_without_login(world):
    _send_all(world)
    url = LINK.findall(_message_to("ana@acme.test").body)[0]
    client = Client(enforce_csrf_checks=True)  # a mail client's one-click POST has no CSRF token
    before = _state()
    page = client.get(_path(url))
    assert page.status_code == 200
    body = page.content.decode()
    assert "Stop sending the monthly report for <strong>Alpha</strong> to <strong>ana@acme.test</strong>?" in body
    assert _state() == before  # a GET (link checker, preview) changes nothing

    response = client.post(_path(url), {"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    assert "ana@acme.test will no longer receive the monthly report for Alpha." in response.content.decode()
    row = m.ReportDelivery.objects.get(recipient="ana@acme.test")
    assert row.unsubscribed_at is not None
    opt = m.ReportScopeOptOut.objects.get()
    assert (opt.org_id, opt.team_id, opt.email, opt.via) == (world.org.id, world.alpha.id, "ana@acme.test", "link")
    event = m.AuditEvent.objects.get()
    assert (event.action, event.object_type, event.object_id, event.actor_label) == (
        "recipient.change",
        "report_recipients",
        str(world.alpha.id),
        "unsubscribe link (ana@acme.test)",
    )
    assert (event.before, event.after) == ({"unsubscribed": []}, {"unsubscribed": ["ana@acme.test"]})
    assert event.reason == "unsubscribed ana@acme.test (link)"
    # Only Alpha's report: ana still receives nothing else by this, and others are unchanged.
    assert "ana@acme.test" not in {
        r.email for r in sel.report_recipients_list(org_id=world.org.id, team_id=world.alpha.id)
    }
    assert {r.email for r in sel.report_recipients_list(org_id=world.org.id, team_id=world.alpha.id)} == {
        "alpha-leads@acme.test",
        "ben@acme.test",
    }

    # The deliveries page says so on the row.
    staff = Client()
    staff.force_login(m.Membership.objects.get(user__username="root").user)
    assert "Unsubscribed with this message's link" in staff.get("/reports/deliveries/").content.decode()

    # The link works once: used again (POST or GET) it is refused and changes nothing.
    after = _state()
    again = client.post(_path(url), {"List-Unsubscribe": "One-Click"})
    assert again.status_code == 410
    assert "this link was already used on" in again.content.decode()
    assert client.get(_path(url)).status_code == 410
    assert _state() == after


@pytest.mark.parametrize("how", ["forged", "altered", "other-salt", "expired", "garbage"])
def test_a_forged_or_expired_link_is_refused_and_changes_nothing(world, how, monkeypatch):
    _send_all(world)
    row = m.ReportDelivery.objects.get(recipient="ana@acme.test")
    good = svc.report_unsubscribe_token(delivery=row)
    if how == "forged":  # signed with another key
        token = signing.dumps({"d": row.pk}, key="not-the-secret", salt=svc.UNSUBSCRIBE_SALT)
    elif how == "altered":  # another delivery's id under ana's signature
        _payload, stamp, sig = good.split(":")
        other = m.ReportDelivery.objects.get(recipient="root@acme.test")
        forged_payload = signing.b64_encode(f'{{"d":{other.pk}}}'.encode()).decode()
        token = f"{forged_payload}:{stamp}:{sig}"
    elif how == "other-salt":  # a token the application signs for something else
        token = signing.dumps({"d": row.pk}, salt="another.purpose")
    elif how == "expired":
        real = signing.time.time
        monkeypatch.setattr(signing.time, "time", lambda: real() - svc.UNSUBSCRIBE_MAX_AGE_S - 60)
        token = svc.report_unsubscribe_token(delivery=row)
        monkeypatch.setattr(signing.time, "time", real)
    else:
        token = "not-a-token"
    before = _state()
    client = Client(enforce_csrf_checks=True)
    for response in (client.get(f"/reports/unsubscribe/{token}/"), client.post(f"/reports/unsubscribe/{token}/")):
        assert response.status_code == 400
        expected = "has expired" if how == "expired" else "is not valid"
        assert expected in response.content.decode()
    assert _state() == before
    assert client.put(f"/reports/unsubscribe/{good}/").status_code == 405
    assert _state() == before


def test_the_next_run_skips_the_unsubscribed_address(world):
    _send_all(world)
    url = LINK.findall(_message_to("ana@acme.test").body)[0]
    assert Client().post(_path(url)).status_code == 200
    # December: Alpha has data again; the run plans no row for ana, and the others get theirs.
    job = world.alpha_jobs[0]
    m.TeamDay.objects.create(
        org=world.org,
        team=world.alpha,
        site=world.site,
        day=dt.date(2026, 12, 5),
        energy_j=10 * KWH,
        co2e_operational_g=500.0,
    )
    assert job.team_id == world.alpha.id
    mail.outbox.clear()
    december = dt.date(2026, 12, 1)
    svc.report_month_plan(org_id=world.org.id, month=december, now=dt.datetime(2027, 1, 2, 6, tzinfo=UTC))
    assert sorted(
        m.ReportDelivery.objects.filter(month=december, team=world.alpha).values_list("recipient", flat=True)
    ) == ["alpha-leads@acme.test", "ben@acme.test"]
    # A resend to the address is refused (only the recipient subscribes again), changing nothing.
    count = m.ReportDelivery.objects.count()
    with pytest.raises(StateError, match=re.escape("ana@acme.test unsubscribed from this report")):
        svc.report_delivery_resend(
            org_id=world.org.id, team_id=world.alpha.id, month=MONTH, recipient="ana@acme.test", reason="x", actor="ops"
        )
    assert m.ReportDelivery.objects.count() == count


def test_a_row_planned_before_the_opt_out_is_skipped_when_its_turn_comes(world):
    svc.report_month_plan(org_id=world.org.id, month=MONTH, now=SEND_AT)
    svc.report_scope_opt_out_set(
        org_id=world.org.id, team_id=world.alpha.id, email="Ben@Acme.test", opted_out=True, via="page", actor="ben"
    )
    outcome = svc.report_scope_deliver(org_id=world.org.id, team_id=world.alpha.id, month=MONTH, now=SEND_AT)
    assert (outcome.sent, outcome.skipped) == (2, 1)
    assert sorted(x.to[0] for x in mail.outbox) == ["alpha-leads@acme.test", "ana@acme.test"]
    row = m.ReportDelivery.objects.get(recipient="ben@acme.test")
    assert (row.status, row.attempts, row.last_error) == (Status.SKIPPED, 0, "unsubscribed from this report")


def test_a_signed_in_user_opts_out_and_in_per_team_on_the_reports_page(world, client):
    ana = m.Membership.objects.get(user__username="ana").user
    root = m.Membership.objects.get(user__username="root").user
    client.force_login(ana)
    body = client.get("/reports/").content.decode()
    assert "<title>Reports · CarbonLedger</title>" in body and body.count('id="subscriptions"') == 1
    assert "Alpha (Acme AI)" in body and "organisation roll-up" not in body and "Beta" not in body
    response = client.post("/reports/subscriptions/", {"org": world.org.id, "team": world.alpha.id, "subscribe": "no"})
    assert response.status_code == 302 and response["Location"] == "/reports/#subscriptions"
    opt = m.ReportScopeOptOut.objects.get()
    assert (opt.team_id, opt.email, opt.via) == (world.alpha.id, "ana@acme.test", "page")
    assert m.AuditEvent.objects.get().actor_label == "ana"
    assert sel.report_subscription_list(user_id=ana.id)[0].opted_out is True
    assert "Subscribe again" in client.get("/reports/").content.decode()
    # Refused, changing nothing: another team's report, a team of another organisation, junk.
    before = _state()
    assert (
        client.post(
            "/reports/subscriptions/", {"org": world.org.id, "team": world.beta.id, "subscribe": "no"}
        ).status_code
        == 404
    )
    assert (
        client.post("/reports/subscriptions/", {"org": world.org.id, "team": "", "subscribe": "no"}).status_code == 404
    )
    assert client.post("/reports/subscriptions/", {"org": "x", "subscribe": "no"}).status_code == 404
    assert (
        client.post(
            "/reports/subscriptions/", {"org": world.org.id, "team": world.alpha.id, "subscribe": "maybe"}
        ).status_code
        == 400
    )
    assert client.get("/reports/subscriptions/").status_code == 405
    assert _state() == before
    # Subscribing again: back among the recipients.
    client.post("/reports/subscriptions/", {"org": world.org.id, "team": world.alpha.id, "subscribe": "yes"})
    assert not m.ReportScopeOptOut.objects.exists()
    assert "ana@acme.test" in {r.email for r in sel.report_recipients_list(org_id=world.org.id, team_id=world.alpha.id)}
    last = m.AuditEvent.objects.order_by("-id").first()
    assert (last.before, last.after, last.reason) == (
        {"unsubscribed": ["ana@acme.test"]},
        {"unsubscribed": []},
        "subscribed again ana@acme.test (page)",
    )
    # An admin manages the roll-up; out of it, still in nothing else's way.
    client.force_login(root)
    assert [(s.team_id, s.label) for s in sel.report_subscription_list(user_id=root.id)] == [
        (None, "Acme AI: organisation roll-up")
    ]
    client.post("/reports/subscriptions/", {"org": world.org.id, "team": "", "subscribe": "no"})
    assert {r.email for r in sel.report_recipients_list(org_id=world.org.id, team_id=None)} == {"lead@acme.test"}
    # Signed out: the page and the form need a login.
    client.logout()
    assert (
        client.post("/reports/subscriptions/", {"org": world.org.id, "team": "", "subscribe": "yes"}).status_code == 302
    )
    assert m.ReportScopeOptOut.objects.get().email == "root@acme.test"


def test_scope_opt_out_service_refuses_bad_input_and_repeats_change_nothing(world):
    kw = {"org_id": world.org.id, "email": "x@acme.test", "opted_out": True, "actor": "ops"}
    assert svc.report_scope_opt_out_set(team_id=world.beta.id, via="page", **kw) is True
    assert svc.report_scope_opt_out_set(team_id=world.beta.id, via="page", **kw) is False
    other = m.Team.objects.create(org=m.Organization.objects.create(name="Other", slug="other"), name="O", slug="o")
    with pytest.raises(Exception, match="is not in organisation"):
        svc.report_scope_opt_out_set(team_id=other.id, via="page", **kw)
    with pytest.raises(Exception, match="is not one of link, page"):
        svc.report_scope_opt_out_set(team_id=world.beta.id, via="mail", **kw)
    assert m.ReportScopeOptOut.objects.count() == 1 and m.AuditEvent.objects.count() == 1
