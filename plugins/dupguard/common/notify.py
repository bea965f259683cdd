"""Failure alerts: one email (and a Slack message when ``alerts_slack`` exists).

:class:`DupguardNotifier` (an ``airflow.sdk`` ``BaseNotifier``) is attached to every DAG by
:mod:`dupguard.common.dagkit`: as the tasks' ``on_failure_callback``
and as the DAG's ``on_failure_callback``. A run that fails because a task failed is
reported once, by the task's callback; the DAG callback only reports runs that failed
for another reason (a run timeout, say), so each failure gives exactly one alert.
"""
from __future__ import annotations

import html
import logging
import traceback
from typing import Any
from urllib.parse import quote

from airflow.sdk import BaseNotifier

from dupguard.common import settings

log = logging.getLogger(__name__)


def _log_url(dag_id: str, run_id: str, task_id: str | None, map_index: int = -1, try_number: int | None = None) -> str:
    base = settings.ui_base_url()
    url = f"{base}/dags/{quote(dag_id)}/runs/{quote(run_id, safe='')}"
    if task_id:
        url += f"/tasks/{quote(task_id)}"
        if map_index is not None and map_index >= 0:
            url += f"/mapped/{map_index}"
        if try_number:
            url += f"?try_number={try_number}"
    return url


def build_alert(context: dict[str, Any]) -> dict[str, str] | None:
    """Subject, text and HTML of the alert for ``context``; None when none is due."""
    dag_run = context.get("dag_run")
    ti = context.get("ti") or context.get("task_instance")
    reason = context.get("reason")
    dag_id = getattr(dag_run, "dag_id", None) or getattr(context.get("dag"), "dag_id", "?")
    run_id = getattr(dag_run, "run_id", None) or context.get("run_id", "?")
    exception = context.get("exception")
    is_dag_callback = "reason" in context and "exception" not in context
    if is_dag_callback:
        if reason == "task_failure":
            return None  # the failed task's own callback has sent the alert
        task_id = None
        error = f"run failed: {reason}"
    else:
        task_id = getattr(ti, "task_id", None)
        if exception is None:
            error = "task failed (no exception recorded)"
        elif isinstance(exception, BaseException):
            error = "".join(traceback.format_exception_only(type(exception), exception)).strip()
        else:
            error = str(exception)
    try_number = getattr(ti, "try_number", None) if task_id else None
    map_index = getattr(ti, "map_index", -1) if task_id else -1
    url = _log_url(dag_id, run_id, task_id, map_index, try_number)
    what = f"task {task_id}" if task_id else "run"
    subject = f"[dupguard] FAILED {dag_id}.{task_id or '<run>'} run {run_id}"
    logical = context.get("logical_date")
    text = (
        f"dupguard: {what} of DAG {dag_id} failed.\n\n"
        f"DAG:     {dag_id}\nTask:    {task_id or '-'}\nRun:     {run_id}\n"
        f"Logical: {logical}\nTry:     {try_number or '-'}\n\n"
        f"Error:\n{error}\n\nLog: {url}\n"
    )
    body = (
        f"<h3>dupguard: {html.escape(what)} of DAG <code>{html.escape(dag_id)}</code> failed</h3>"
        f"<table><tr><td>DAG</td><td>{html.escape(dag_id)}</td></tr>"
        f"<tr><td>Task</td><td>{html.escape(task_id or '-')}</td></tr>"
        f"<tr><td>Run</td><td>{html.escape(str(run_id))}</td></tr>"
        f"<tr><td>Logical date</td><td>{html.escape(str(logical))}</td></tr>"
        f"<tr><td>Try</td><td>{html.escape(str(try_number or '-'))}</td></tr></table>"
        f"<h4>Error</h4><pre>{html.escape(error)}</pre>"
        f'<p><a href="{html.escape(url)}">Open the task log in Airflow</a></p>'
    )
    return {"subject": subject, "text": text, "html": body, "url": url}


def send_email(subject: str, html_content: str, to: list[str]) -> None:
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    with SmtpHook(smtp_conn_id=settings.SMTP_CONN_ID) as hook:
        hook.send_email_smtp(to=to, subject=subject, html_content=html_content,
                             from_email=hook.from_email or settings.alert_from())


def send_slack(text: str) -> bool:
    from airflow.sdk.exceptions import AirflowNotFoundException

    from dupguard.common.connections import get_connection

    try:
        get_connection(settings.SLACK_CONN_ID)
    except AirflowNotFoundException:  # optional channel: absent means off
        return False
    from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook

    SlackWebhookHook(slack_webhook_conn_id=settings.SLACK_CONN_ID).send(text=text)
    return True


def notify_failure(context: dict[str, Any]) -> None:
    """Failure callback for tasks and DAGs. Never raises: a broken alert channel is logged."""
    alert = build_alert(context)
    if alert is None:
        log.info("dupguard alert: run failed through a task failure, already alerted by the task")
        return
    recipients = settings.alert_emails()
    if recipients:
        try:
            send_email(alert["subject"], alert["html"], recipients)
            log.info("dupguard alert emailed to %s: %s", ", ".join(recipients), alert["subject"])
        except Exception:  # noqa: BLE001 - the alert must not mask the failure itself
            log.exception("dupguard alert: email through '%s' failed", settings.SMTP_CONN_ID)
    else:
        log.warning("dupguard alert: DUPGUARD_ALERT_EMAILS is empty, no email sent: %s", alert["subject"])
    try:
        if send_slack(f"{alert['subject']}\n{alert['url']}"):
            log.info("dupguard alert sent to Slack")
    except Exception:  # noqa: BLE001
        log.exception("dupguard alert: Slack webhook failed")


class DupguardNotifier(BaseNotifier):
    """The project's notifier: one alert per failure, to every configured channel."""

    def notify(self, context: dict[str, Any]) -> None:
        notify_failure(context)
