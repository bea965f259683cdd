"""What one run of the per-minute ``blocks_duplicate_cleanup`` costs end to end under the demo's
LocalExecutor: CPU seconds of every Airflow and PostgreSQL process per run, and run wall time.

    make bench BENCH_ARGS=perminute        # DUPGUARD_BENCH_MINUTES=5 per phase by default

It starts the demo's processes itself (embedded PostgreSQL, ``airflow standalone``, the telemetry
demo data and its ingestion simulator) on free ports in a temporary directory, leaves every DAG
paused for one phase (the baseline: scheduler, DAG processor, API server idling), then unpauses
only ``blocks_duplicate_cleanup`` for a phase of the same length. Cost per run = (CPU of the
unpaused phase - CPU of the paused phase) / runs finished in the unpaused phase. CPU is read from
``/proc`` (user + system, own and reaped children) for the process trees of ``airflow standalone``
and of the postmaster.
"""
from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path

from bench.common import ROOT, free_port, print_table

DAG = "blocks_duplicate_cleanup"
TARGET_CPU_S = 2.0
TARGET_WALL_S = 3.0
TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds incl. reaped children) of ``pid``."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    ppid = int(fields[1])
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return ppid, (utime + stime + cutime + cstime) / TICKS


def _role(pid: int) -> str:
    """What a process of the trees is, from its command line."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "gone"
    for needle, role in (("LocalExecutor", "task processes (executor workers)"), ("serve-logs", "serve-logs"),
                         ("api_server", "api-server"), ("api-server", "api-server"),
                         ("dag-processor", "dag-processor"), ("triggerer", "triggerer"),
                         ("scheduler", "scheduler"), ("standalone", "standalone"), ("postgres", "postgres")):
        if needle in cmd:
            return role
    return "other"


def cpu_by_role(roots: list[int]) -> dict[str, float]:
    """CPU seconds so far per role (own + reaped children) over the process trees under ``roots``:
    a task's supervisor and runner are reaped by their executor worker, so they count there."""
    out: dict[str, float] = {}
    for pid, cpu in _tree(roots).items():
        role = _role(pid)
        out[role] = out.get(role, 0.0) + cpu
    return out


def _tree(roots: list[int]) -> dict[int, float]:
    procs = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st:
                procs[int(entry)] = st
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    total: dict[int, float] = {}
    stack, seen = list(roots), set()
    while stack:
        pid = stack.pop()
        if pid in seen or pid not in procs:
            continue
        seen.add(pid)
        total[pid] = procs[pid][1]
        stack.extend(children.get(pid, []))
    return total


def tree_cpu(roots: list[int]) -> float:
    """CPU seconds used so far by the process trees under ``roots``."""
    return sum(_tree(roots).values())


def _env(local: Path, pg_port: int, af_port: int, smtp_port: int) -> dict[str, str]:
    out = subprocess.run(["bash", "-c", "source scripts/env.sh && env -0"], cwd=ROOT, capture_output=True,
                         check=True, env={**os.environ, "DUPGUARD_LOCAL": str(local), "DUPGUARD_PG_PORT": str(pg_port),
                                          "DUPGUARD_AIRFLOW_PORT": str(af_port), "DUPGUARD_SMTP_PORT": str(smtp_port)})
    return dict(item.split("=", 1) for item in out.stdout.decode().split("\0") if "=" in item)


def _run(cmd: list[str], env: dict[str, str], log: Path) -> None:
    with open(log, "ab") as fh:
        subprocess.run(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT, check=True)


def _ts(iso: str | None) -> float | None:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() if iso else None


def main() -> None:
    from tools.airflow_api import AirflowApi

    minutes = float(os.environ.get("DUPGUARD_BENCH_MINUTES", "5"))
    base = Path(tempfile.mkdtemp(prefix="dupguard-perminute-"))
    os.chmod(base, 0o755)
    pg_port, af_port, smtp_port = free_port(), free_port(), free_port()
    env = _env(base, pg_port, af_port, smtp_port)
    logs = base / "logs"
    logs.mkdir()
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]).write_text('{"admin": "admin"}')
    groups: list[int] = []
    py = str(ROOT / ".venv" / "bin" / "python")
    try:
        _run([py, "-m", "tools.embedded_pg", "start", "--root", f"{base}/pg", "--port", str(pg_port),
              "--db", "airflow", "--db", "telemetry"], env, logs / "pg.log")
        _run([py, "-m", "airflow", "db", "migrate"], env, logs / "migrate.log")
        _run([py, "-c", "from tools.demo_telemetry import setup; setup()"], env, logs / "setup.log")
        for name, cmd in (("smtp", [py, "-m", "tools.smtp_sink", "--folder", f"{base}/mail", "--port", str(smtp_port)]),
                          ("simulator", [py, "-m", "tools.demo_telemetry", "simulate"]),
                          ("airflow", [py, "-m", "airflow", "standalone"])):
            p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=open(logs / f"{name}.log", "wb"),
                                 stderr=subprocess.STDOUT, start_new_session=True)
            groups.append(p.pid)
        airflow_pid = groups[-1]
        postmaster = int((base / "pg" / "data" / "postmaster.pid").read_text().split()[0])
        api = AirflowApi(f"http://localhost:{af_port}", "admin", "admin")
        deadline = time.monotonic() + 300
        while True:
            try:
                api.wait_for_dags([DAG], timeout=5)
                break
            except Exception:  # noqa: BLE001 - not up yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(3)
        for dag_id in api.dag_ids():
            api.set_paused(dag_id, True)
        # warm-up: one run before measuring, so one-time costs of a fresh Airflow (the api-server
        # builds its versioned execution-API routers on the first task's request: ~10 CPU-s) are
        # not charged to the per-run figure
        api.set_paused(DAG, False)
        warm_deadline = time.monotonic() + 300
        while not any(r["state"] == "success" for r in api.runs(DAG, limit=5)):
            if time.monotonic() > warm_deadline:
                raise RuntimeError(f"no successful warm-up run of {DAG} in 5 minutes")
            time.sleep(2)
        api.set_paused(DAG, True)
        time.sleep(60)  # let start-up settle (first parses, migrations of caches, the warm-up run's tail)
        warm_ids = {r["dag_run_id"] for r in api.runs(DAG, limit=100)}

        roots = [airflow_pid, postmaster]
        phase_s = minutes * 60
        r0 = cpu_by_role(roots)
        time.sleep(phase_s)
        r1 = cpu_by_role(roots)
        api.set_paused(DAG, False)
        t_unpause = time.time()
        time.sleep(phase_s)
        r2 = cpu_by_role(roots)
        c0, c1, c2 = sum(r0.values()), sum(r1.values()), sum(r2.values())
        t_end = time.time()
        api.set_paused(DAG, True)
        runs = [r for r in api.runs(DAG, limit=100) if r["dag_run_id"] not in warm_ids
                and r["state"] == "success" and _ts(r.get("end_date")) and t_unpause <= _ts(r["end_date"]) <= t_end]
        failed = [r for r in api.runs(DAG, limit=100) if r["state"] == "failed"]
        walls = [_ts(r["end_date"]) - _ts(r["start_date"]) for r in runs]
        paused_cpu, unpaused_cpu = c1 - c0, c2 - c1
        per_run = (unpaused_cpu - paused_cpu) / len(runs) if runs else float("nan")
        wall = statistics.median(walls) if walls else float("nan")
        print_table(
            f"{DAG} under the demo's LocalExecutor ({minutes:g} min paused vs {minutes:g} min unpaused, "
            f"Airflow + PostgreSQL processes)",
            ["figure", "value", "target", "met"],
            [["CPU-s, paused phase", paused_cpu, "", ""],
             ["CPU-s, unpaused phase", unpaused_cpu, "", ""],
             ["runs finished (success) / failed", f"{len(runs)} / {len(failed)}", "", ""],
             ["CPU-s per run", per_run, f"<= {TARGET_CPU_S:g}", "yes" if per_run <= TARGET_CPU_S else "NO"],
             ["run wall time, median s", wall, f"<= {TARGET_WALL_S:g}", "yes" if wall <= TARGET_WALL_S else "NO"],
             ["run wall time, max s", max(walls) if walls else float("nan"), "", ""]])
        if runs:
            roles = sorted(set(r0) | set(r1) | set(r2))
            delta = {k: ((r2.get(k, 0) - r1.get(k, 0)) - (r1.get(k, 0) - r0.get(k, 0))) / len(runs) for k in roles}
            print_table("CPU-s per run by process (unpaused minus paused phase, per run)", ["process", "CPU-s per run"],
                        [[k, delta[k]] for k in sorted(roles, key=lambda k: -delta[k]) if k != "gone"])
        api.close()
    finally:
        for pgid in groups:
            try:
                os.killpg(pgid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        time.sleep(5)
        for pgid in groups:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        subprocess.run([py, "-m", "tools.embedded_pg", "stop", "--root", f"{base}/pg", "--port", str(pg_port)],
                       cwd=ROOT, env=env, capture_output=True)
        if not os.environ.get("DUPGUARD_KEEP_BENCH_DIRS"):
            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"kept {base}")
