"""The report as one e-mail: multipart/mixed > multipart/related(multipart/alternative(text,
HTML) + inline PNG charts by Content-ID) + the month's jobs as CSV and the report as PDF."""

from __future__ import annotations

import csv
import io
from email.mime.image import MIMEImage

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.core.mail.message import SafeMIMEMultipart

from accounting.reports.charts import report_charts
from accounting.reports.render import report_html, report_pdf, report_text
from accounting.selectors.reports import MonthReport, month_jobs_csv_rows


class ReportMessage(EmailMultiAlternatives):
    """EmailMultiAlternatives with inline images: the alternative part and the images sit in
    one multipart/related, so mail clients resolve ``cid:`` references and do not list the
    charts as attachments."""

    def __init__(self, *args, related_images: list[tuple[str, bytes]] | None = None, **kwargs):  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.related_images = list(related_images or [])

    def _create_alternatives(self, msg):  # type: ignore[no-untyped-def]
        msg = super()._create_alternatives(msg)  # type: ignore[misc]
        if not self.related_images:
            return msg
        related = SafeMIMEMultipart(_subtype="related", encoding=self.encoding or settings.DEFAULT_CHARSET)
        related.attach(msg)
        for cid, png in self.related_images:
            image = MIMEImage(png, _subtype="png")
            image.add_header("Content-ID", f"<{cid}>")
            image.add_header("Content-Disposition", "inline", filename=f"{cid}.png")
            related.attach(image)
        return related


def report_subject(report: MonthReport) -> str:
    partial = " (month to date)" if report.partial else ""
    return f"CarbonLedger report {report.month:%B %Y}{partial}: {report.scope_label}"


def report_filename(report: MonthReport, ext: str) -> str:
    who = f"team-{report.team_id}" if report.team_id is not None else "organisation"
    return f"carbonledger-{report.month:%Y-%m}-{who}.{ext}"


def report_jobs_csv(report: MonthReport) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf)
    for row in month_jobs_csv_rows(report):
        writer.writerow(row)
    return buf.getvalue().encode()


def report_message_build(
    *, report: MonthReport, to: list[str], dashboard_url: str, from_email: str | None = None
) -> EmailMultiAlternatives:
    """The report e-mail to ``to``; ``dashboard_url`` is the month's page (absolute)."""
    msg = ReportMessage(
        related_images=list(report_charts(report).items()),
        subject=report_subject(report),
        body=report_text(report, dashboard_url=dashboard_url),
        from_email=from_email or settings.DEFAULT_FROM_EMAIL,
        to=to,
    )
    msg.mixed_subtype = "mixed"
    msg.attach_alternative(report_html(report, for_email=True, dashboard_url=dashboard_url), "text/html")
    msg.attach(report_filename(report, "csv"), report_jobs_csv(report), "text/csv")
    msg.attach(report_filename(report, "pdf"), report_pdf(report, dashboard_url=dashboard_url), "application/pdf")
    return msg
