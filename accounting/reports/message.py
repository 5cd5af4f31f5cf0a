"""The report as one e-mail:

    multipart/mixed
      multipart/alternative
        text/plain                      the report as text
        multipart/related
          text/html                     refers to the charts as <img src="cid:...">
          image/png (Content-ID)        one per chart, inline
      text/csv   (attachment)           the month's jobs, the dashboard export's columns
      application/pdf (attachment)      the report as PDF

The charts sit in a multipart/related beside the HTML only (RFC 2387): a client that shows the
plain text never lists them, and one that shows the HTML resolves ``cid:`` from its siblings.

Rendering (charts, PDF) is the expensive part and is the same for every recipient of one
report, so it is done once (``report_parts_build``: the template context and the charts once,
the PDF from those same PNGs) and each recipient's message is assembled from the parts
(``report_message_build``). The one thing a recipient's message has of its own, the
unsubscribe link, is put into the text and HTML rendered once (a slot replaced per recipient)
and into the ``List-Unsubscribe`` header (RFC 2369) with ``List-Unsubscribe-Post`` (RFC 8058
one-click); the PDF is an attachment to file and carries no link.
"""

from __future__ import annotations

import csv
import html
import io
from dataclasses import dataclass
from email.mime.image import MIMEImage

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.core.mail.message import SafeMIMEMultipart

from accounting.reports.charts import report_charts
from accounting.reports.render import report_context, report_html, report_pdf, report_text
from accounting.selectors.reports import MonthReport, month_jobs_csv_rows


class ReportMessage(EmailMultiAlternatives):
    """EmailMultiAlternatives whose HTML alternative is a multipart/related with the inline
    images (see the module docstring for the tree)."""

    def __init__(self, *args, related_images: list[tuple[str, bytes]] | None = None, **kwargs):  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.related_images = list(related_images or [])

    def _create_alternatives(self, msg):  # type: ignore[no-untyped-def]
        if not self.alternatives:
            return msg
        encoding = self.encoding or settings.DEFAULT_CHARSET
        alternative = SafeMIMEMultipart(_subtype="alternative", encoding=encoding)
        if self.body:
            alternative.attach(msg)
        for content, mimetype in self.alternatives:
            part = self._create_mime_attachment(content, mimetype)  # type: ignore[attr-defined]
            if mimetype == "text/html" and self.related_images:
                related = SafeMIMEMultipart(_subtype="related", encoding=encoding, type="text/html")
                related.attach(part)
                for cid, png in self.related_images:
                    image = MIMEImage(png, _subtype="png")
                    image.add_header("Content-ID", f"<{cid}>")
                    image.add_header("Content-Disposition", "inline", filename=f"{cid}.png")
                    related.attach(image)
                part = related
            alternative.attach(part)
        return alternative


# Stands for the recipient's unsubscribe URL in the text and HTML rendered once per report
# (nothing a template or an escaper changes; never left in a message).
UNSUBSCRIBE_SLOT = "carbonledger-unsubscribe-slot-4f1c9e"


@dataclass(frozen=True)
class ReportParts:
    """Everything of one report's e-mail but its recipient, Message-ID and unsubscribe link
    (``UNSUBSCRIBE_SLOT`` in ``text`` and ``html``)."""

    subject: str
    text: str
    html: str
    images: tuple[tuple[str, bytes], ...]  # (Content-ID, PNG)
    csv_name: str
    csv_bytes: bytes
    pdf_name: str
    pdf_bytes: bytes


def report_subject(report: MonthReport, *, note: str = "") -> str:
    partial = " (month to date)" if report.partial else ""
    suffix = f" ({note})" if note else ""
    return f"CarbonLedger report {report.month:%B %Y}{partial}: {report.scope_label}{suffix}"


def report_filename(report: MonthReport, ext: str) -> str:
    who = f"team-{report.team_id}" if report.team_id is not None else "organisation"
    return f"carbonledger-{report.month:%Y-%m}-{who}.{ext}"


def report_jobs_csv(report: MonthReport) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf)
    for row in month_jobs_csv_rows(report):
        writer.writerow(row)
    return buf.getvalue().encode()


def report_parts_build(*, report: MonthReport, dashboard_url: str, subject_note: str = "") -> ReportParts:
    """Render ``report`` once: text, HTML (charts by ``cid:``), the PNG charts, CSV and PDF.
    ``dashboard_url`` is the absolute address of the month's page; ``subject_note`` is added to
    the subject in brackets ("revised")."""
    context = report_context(report, dashboard_url=dashboard_url)  # the what-if recommendations: once
    charts = report_charts(report)  # drawn once: the inline images and the PDF's
    return ReportParts(
        subject=report_subject(report, note=subject_note),
        text=report_text(report, unsubscribe_url=UNSUBSCRIBE_SLOT, context=context),
        html=report_html(report, for_email=True, unsubscribe_url=UNSUBSCRIBE_SLOT, context=context),
        images=tuple(charts.items()),
        csv_name=report_filename(report, "csv"),
        csv_bytes=report_jobs_csv(report),
        pdf_name=report_filename(report, "pdf"),
        pdf_bytes=report_pdf(report, charts=charts, context=context),
    )


def report_message_build(
    *,
    parts: ReportParts,
    to: list[str],
    unsubscribe_url: str,
    message_id: str = "",
    from_email: str | None = None,
) -> ReportMessage:
    """The e-mail of ``parts`` to ``to``; ``message_id`` (``<...@...>``) is set when given, so
    the delivery ledger can record it before the message leaves. ``unsubscribe_url`` (absolute,
    https in production) is the recipient's own link: in the text, the HTML and the
    ``List-Unsubscribe`` / ``List-Unsubscribe-Post`` headers."""
    headers = {
        # RFC 3834: a machine's monthly mail; vacation responders and the like do not answer it.
        "Auto-Submitted": "auto-generated",
        # RFC 2369 and RFC 8058: a mail client's "unsubscribe" button POSTs
        # "List-Unsubscribe=One-Click" to the link, without cookies or a confirmation page.
        "List-Unsubscribe": f"<{unsubscribe_url}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        **({"Message-ID": message_id} if message_id else {}),
    }
    msg = ReportMessage(
        related_images=list(parts.images),
        subject=parts.subject,
        body=parts.text.replace(UNSUBSCRIBE_SLOT, unsubscribe_url),
        from_email=from_email or settings.DEFAULT_FROM_EMAIL,
        to=to,
        headers=headers,
    )
    msg.attach_alternative(parts.html.replace(UNSUBSCRIBE_SLOT, html.escape(unsubscribe_url)), "text/html")
    msg.attach(parts.csv_name, parts.csv_bytes, "text/csv")
    msg.attach(parts.pdf_name, parts.pdf_bytes, "application/pdf")
    return msg
