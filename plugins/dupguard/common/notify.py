"""Alerts as incidents: FAILED once, STILL FAILING at most every repeat interval, RECOVERED once.

:class:`DupguardNotifier` (an ``airflow.sdk`` ``BaseNotifier``) is attached to every DAG by
:mod:`dupguard.common.dagkit`: on failure (tasks and the DAG) and on task success (which closes an
open incident). A run that fails because a task failed is that task's incident; the DAG-level
callback only speaks for runs that failed without a failed task (a run timeout). Every message goes
to email (``alerts_smtp``, to ``DUPGUARD_ALERT_EMAILS``) and, when the connection exists, Slack
(``alerts_slack``); a broken channel is logged and never hides the failure.
"""
from __future__ import annotations

import html
import logging
import traceback
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from airflow.sdk import BaseNotifier

from dupguard.common import incidents, runbook, settings

log = logging.getLogger(__name__)

RUN = "<run>"
LATE = "<late>"


# --- what failed -------------------------------------------------------------------------
def log_url(dag_id: str, run_id: str, task_id: str | None, map_index: int = -1, try_number: int | None = None) -> str:
    url = f"{settings.ui_base_url()}/dags/{quote(dag_id)}/runs/{quote(run_id, safe='')}"
    if task_id and not task_id.startswith("<"):
        url += f"/tasks/{quote(task_id)}"
        if map_index is not None and map_index >= 0:
            url += f"/mapped/{map_index}"
        if try_number:
            url += f"?try_number={try_number}"
    return url


def _num(v: Any) -> str:
    return f"{v:g}" if isinstance(v, (int, float)) else str(v)


def _bound_words(lo: Any, hi: Any) -> str:
    if lo is not None and hi is not None:
        return f"= {_num(lo)}" if lo == hi else f"between {_num(lo)} and {_num(hi)}"
    if lo is not None:
        return f">= {_num(lo)}"
    if hi is not None:
        return f"<= {_num(hi)}"
    return "as expected"


def _observed_value(observed: Any) -> Any:
    """The value a one-row aggregate had (GX reports it as the unexpected value)."""
    if isinstance(observed, dict):
        values = observed.get("unexpected_values")
        if values:
            return values[0] if len(values) == 1 else values
        if "unexpected_count" in observed:
            return f"{observed['unexpected_count']} row(s) outside the bound"
    return observed


def expectation_words(f: dict[str, Any]) -> str:
    """One failed expectation in words: ``duplicate_ids must be = 0, observed 3 (why: ...)``."""
    if f.get("expectation") == "expect_table_row_count_to_equal":
        what = f"the aggregate must have {f.get('description', '')}"
    elif f.get("column"):
        what = f"{f['column']} must be {_bound_words(f.get('min'), f.get('max'))}"
    else:
        what = f.get("description", "?")
    text = f"{what}, observed {_observed_value(f.get('observed'))}"
    return text + (f" ({f['reason']})" if f.get("reason") else "")


def describe_failure(exception: Any, dag_id: str, task_id: str, *, error: str | None = None,
                     kind: str | None = None) -> dict[str, Any]:
    """Error text, its kind (exception class, and the gate's name), the tables concerned, the
    failed expectations in words, offending keys and the Data Docs link. A run-level alert (a run
    failed without a failed task, a late run) has no exception: it gives its ``error`` and ``kind``,
    so the runbook's next step is looked up by that kind."""
    from dupguard.common.gate import GateError, GateFailed

    out: dict[str, Any] = {"expectations": [], "offending": [], "data_docs": None}
    if error is not None:
        out.update(error=error, kind=kind or "error")
    elif exception is None:
        out.update(error="task failed with no exception recorded: its worker was probably killed or lost "
                         "(heartbeat timeout)", kind="unknown")
    elif isinstance(exception, BaseException):
        out["error"] = "".join(traceback.format_exception_only(type(exception), exception)).strip()
        out["kind"] = type(exception).__name__
    else:
        out.update(error=str(exception), kind="error")
    entry = runbook.entry(dag_id, task_id, out["kind"])
    out.update(tables=entry.tables, next_step=entry.next_step)
    if isinstance(exception, (GateFailed, GateError)):
        out["kind"] = f"{type(exception).__name__}:{exception.gate}"
    if isinstance(exception, GateFailed):  # the expectations are listed in words below the error
        out["error"] = out["error"].splitlines()[0]
        summary = exception.summary or {}
        out["expectations"] = [expectation_words(f) for f in exception.failures]
        out["offending"] = summary.get("offending") or []
        if summary.get("tables"):
            out["tables"] = ", ".join(summary["tables"])
        docs = summary.get("data_docs")
        if docs:
            out["data_docs"] = f"{settings.ui_base_url()}{docs}" if str(docs).startswith("/") else str(docs)
    return out


# --- messages ------------------------------------------------------------------------
def compose(send: str, inc: dict[str, Any], url: str) -> dict[str, str]:
    """Subject, plain text and HTML of a FAILED / STILL FAILING / RECOVERED / LATE message."""
    dag_id, task_id = inc["dag_id"], inc["task_id"]
    d = inc.get("details") or {}
    name = f"{dag_id}.{task_id}"
    if send == "FAILED":
        subject = f"[dupguard] FAILED {name} run {inc['latest_run_id']}"
        lead = f"{'The run' if task_id == RUN else 'Task ' + task_id} of DAG {dag_id} failed."
    elif send == "STILL FAILING" and task_id != LATE:
        subject = f"[dupguard] STILL FAILING {name}: {inc['failures']} failed runs since {inc['opened_at']}"
        lead = (f"{name} has failed {inc['failures']} times since {inc['opened_at']} "
                f"(last: run {inc['latest_run_id']}). Latest error below.")
    elif send == "RECOVERED":
        dur = incidents.duration_text(inc.get("duration_s", 0))
        what = "late" if task_id == LATE else "failed"
        subject = f"[dupguard] RECOVERED {name} after {inc['failures']} {what} runs ({dur})"
        lead = (f"{name} succeeded again at {inc.get('closed_at')}; it had {'been late' if task_id == LATE else 'failed'} "
                f"{inc['failures']} time(s) since {inc['opened_at']} ({dur}).")
    elif send == "LATE" or (send == "STILL FAILING" and task_id == LATE):
        subject = f"[dupguard] LATE {dag_id} run {inc['latest_run_id']}: {inc['latest_error']}"
        lead = f"Run {inc['latest_run_id']} of DAG {dag_id} is {inc['latest_error']}."
    else:
        raise ValueError(send)
    lines = [f"dupguard: {lead}", ""]
    facts = [("DAG", dag_id), ("Task", task_id), ("Run", inc.get("latest_run_id")),
             ("Tables", d.get("tables") or "-"), ("Late runs" if task_id == LATE else "Failed runs", inc.get("failures"))]
    lines += [f"{k + ':':<12} {v}" for k, v in facts]
    if inc.get("new_kinds") and send == "STILL FAILING":
        lines += ["", f"New kinds of error since the last message: {', '.join(inc['new_kinds'])} "
                      f"(the incident opened with {inc.get('kind')})"]
    if send != "RECOVERED":
        lines += ["", "Error:", str(inc.get("latest_error", ""))]
        if d.get("expectations"):
            lines += ["", "Failed expectations:"] + [f"  - {e}" for e in d["expectations"]]
        if d.get("offending"):
            lines += ["", f"Offending keys (up to 10): {', '.join(map(str, d['offending']))}"]
        if d.get("data_docs"):
            lines += ["", f"Gate results (Data Docs): {d['data_docs']}"]
        lines += ["", f"Next step: {d.get('next_step') or runbook.DEFAULT.next_step}"]
    lines += ["", f"Log: {url}"]
    text = "\n".join(lines) + "\n"

    e = html.escape
    rows = "".join(f"<tr><th align='left'>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in facts)
    parts = [f"<h3>{e(subject)}</h3>", f"<p>{e(lead)}</p>", f"<table>{rows}</table>"]
    if inc.get("new_kinds") and send == "STILL FAILING":
        parts.append(f"<p><b>New kinds of error:</b> {e(', '.join(inc['new_kinds']))}</p>")
    if send != "RECOVERED":
        parts.append(f"<h4>Error</h4><pre>{e(str(inc.get('latest_error', '')))}</pre>")
        if d.get("expectations"):
            parts.append("<h4>Failed expectations</h4><ul>" + "".join(f"<li>{e(x)}</li>" for x in d["expectations"])
                         + "</ul>")
        if d.get("offending"):
            parts.append(f"<p><b>Offending keys (up to 10):</b> <code>{e(', '.join(map(str, d['offending'])))}</code></p>")
        if d.get("data_docs"):
            parts.append(f'<p><a href="{e(d["data_docs"])}">Gate results (Data Docs)</a></p>')
        parts.append(f"<p><b>Next step:</b> {e(d.get('next_step') or runbook.DEFAULT.next_step)}</p>")
    parts.append(f'<p><a href="{e(url)}">Open the log in Airflow</a></p>')
    return {"subject": subject, "text": text, "html": "\n".join(parts), "url": url}


# --- channels ------------------------------------------------------------------------
def send_email(subject: str, text: str, html_content: str, to: list[str]) -> None:
    """One multipart/alternative message (plain text and HTML) through ``alerts_smtp``."""
    from email.mime.text import MIMEText

    from airflow.providers.smtp.hooks.smtp import SmtpHook

    class _TextAndHtml(SmtpHook):
        def _build_mime_message(self, *args: Any, **kwargs: Any):
            msg, recipients = super()._build_mime_message(*args, **kwargs)
            html_part = msg.get_payload()[0]
            msg.set_payload([MIMEText(text, "plain", "utf-8"), html_part])
            return msg, recipients

    with _TextAndHtml(smtp_conn_id=settings.SMTP_CONN_ID) as hook:
        hook.send_email_smtp(to=to, subject=subject, html_content=html_content, mime_subtype="alternative",
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


def deliver(message: dict[str, str]) -> None:
    """Send ``message`` to every channel; never raises (a broken channel is logged)."""
    recipients = settings.alert_emails()
    if recipients:
        try:
            send_email(message["subject"], message["text"], message["html"], recipients)
            log.info("dupguard alert emailed to %s: %s", ", ".join(recipients), message["subject"])
        except Exception:  # noqa: BLE001 - the alert must not mask the failure itself
            log.exception("dupguard alert: email through '%s' failed", settings.SMTP_CONN_ID)
    else:
        log.warning("dupguard alert: DUPGUARD_ALERT_EMAILS is empty, no email sent: %s", message["subject"])
    try:
        if send_slack(f"*{message['subject']}*\n{message['text']}"):
            log.info("dupguard alert sent to Slack: %s", message["subject"])
    except Exception:  # noqa: BLE001
        log.exception("dupguard alert: Slack webhook failed")


# --- callbacks -----------------------------------------------------------------------
def _names(context: dict[str, Any]) -> tuple[str, str, Any]:
    dag_run = context.get("dag_run")
    dag_id = getattr(dag_run, "dag_id", None) or getattr(context.get("dag"), "dag_id", "?")
    run_id = getattr(dag_run, "run_id", None) or context.get("run_id", "?")
    return dag_id, run_id, context.get("ti") or context.get("task_instance")


def handle_failure(context: dict[str, Any], store: incidents.Store | None = None,
                   now: datetime | None = None) -> str | None:
    """Failure callback of tasks and DAGs: record the failure in its incident, send what is due.
    Returns what was sent (``FAILED``, ``STILL FAILING`` or None)."""
    dag_id, run_id, ti = _names(context)
    is_dag_callback = "reason" in context and "exception" not in context
    if is_dag_callback and context.get("reason") == "task_failure":
        log.info("dupguard alert: run failed through a task failure; the task's incident speaks for it")
        return None
    task_id = RUN if is_dag_callback else (getattr(ti, "task_id", None) or "?")
    if is_dag_callback:
        details = describe_failure(None, dag_id, task_id, error=f"run failed: {context.get('reason')}",
                                   kind=f"run:{context.get('reason')}")
        url = log_url(dag_id, run_id, None)
    else:
        details = describe_failure(context.get("exception"), dag_id, task_id)
        url = log_url(dag_id, run_id, task_id, getattr(ti, "map_index", -1), getattr(ti, "try_number", None))
    details["url"] = url
    return _record_and_send(store, dag_id, task_id, run_id, details, now, url)


def _record_and_send(store, dag_id, task_id, run_id, details, now, url, first: str = "FAILED",
                     once_per_run: bool = False) -> str | None:
    now = now or datetime.now(timezone.utc)
    try:
        decision = incidents.on_failure(store or incidents.VariableStore(), dag_id=dag_id, task_id=task_id,
                                        run_id=run_id, error=details["error"], kind=details["kind"], now=now,
                                        details={k: v for k, v in details.items() if k not in ("error", "kind")},
                                        once_per_run=once_per_run)
    except Exception:  # noqa: BLE001 - no incident state: alert anyway rather than stay silent
        log.exception("dupguard alert: incident state unavailable; alerting without it")
        decision = incidents.Decision("FAILED", {
            "dag_id": dag_id, "task_id": task_id, "latest_run_id": run_id, "latest_error": details["error"],
            "failures": 1, "opened_at": now.isoformat(timespec="seconds"), "details": details})
    if decision.send is None:
        log.info("dupguard alert: %s.%s failure %d of an open incident; no message (next reminder after %s)",
                 dag_id, task_id, decision.incident.get("failures", 0), incidents.repeat_interval())
        return None
    send = first if decision.send == "FAILED" else decision.send
    deliver(compose(send, decision.incident, url))
    return send


def handle_success(context: dict[str, Any], store: incidents.Store | None = None,
                   now: datetime | None = None) -> list[str]:
    """Success callback of tasks: close the task's incident (and, for a last task, the run's)."""
    dag_id, run_id, ti = _names(context)
    task = context.get("task")
    task_ids = [getattr(ti, "task_id", None) or "?"]
    if task is not None and not getattr(task, "downstream_task_ids", None):
        task_ids += [RUN, LATE]  # a last task's success ends the run's own incidents too
    sent = []
    now = now or datetime.now(timezone.utc)
    for task_id in task_ids:
        try:
            decision = incidents.on_success(store or incidents.VariableStore(), dag_id=dag_id, task_id=task_id,
                                            now=now)
        except Exception:  # noqa: BLE001 - a success must never fail because of its alert
            log.exception("dupguard alert: incident state unavailable; cannot close %s.%s", dag_id, task_id)
            continue
        if decision.send:
            decision.incident["latest_run_id"] = run_id
            deliver(compose(decision.send, decision.incident, log_url(dag_id, run_id, task_id)))
            sent.append(task_id)
    return sent


def handle_late(dag_id: str, run_id: str, what: str, store: incidents.Store | None = None,
                now: datetime | None = None) -> str | None:
    """A run past its limit (:mod:`dupguard.common.deadline`): a LATE incident (``<late>``), opened
    and closed like the others. Once per run: a second task of the same late run adds nothing."""
    details = describe_failure(None, dag_id, LATE, error=what, kind="late")
    url = log_url(dag_id, run_id, None)
    return _record_and_send(store, dag_id, LATE, run_id, details, now, url, first="LATE", once_per_run=True)


class DupguardNotifier(BaseNotifier):
    """The project's notifier: ``DupguardNotifier()`` on failure, ``DupguardNotifier("success")``
    on task success."""

    def __init__(self, event: str = "failure"):
        super().__init__()
        if event not in ("failure", "success"):
            raise ValueError(event)
        self.event = event

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        """Nothing to render (no template fields); and a DAG callback's context holds a serialized
        DAG that has no template environment, so the base class's rendering would fail there."""

    def notify(self, context: dict[str, Any]) -> None:
        try:
            from dupguard.common import deadline

            deadline.stop(context)  # the task ended: its LATE watch (if any) goes with it
            if self.event == "failure":
                handle_failure(context)
            else:
                handle_success(context)
        except Exception:  # noqa: BLE001 - never let the alert path fail a task or hide its error
            log.exception("dupguard alert: notifier failed")
