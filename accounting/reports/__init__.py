"""Presentation of a monthly report (accounting.selectors.reports.MonthReport): the e-mail's
HTML and plain text, the inline charts, the PDF and the message with its attachments.

Everything here reads one MonthReport, so the mail, the PDF and the dashboard preview show the
same figures. No network: charts are matplotlib (Agg), the PDF is WeasyPrint on local HTML.
"""

from accounting.reports.charts import report_charts
from accounting.reports.message import report_message_build
from accounting.reports.render import report_html, report_pdf, report_text

__all__ = ["report_charts", "report_html", "report_message_build", "report_pdf", "report_text"]
