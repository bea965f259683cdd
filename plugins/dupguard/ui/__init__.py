"""The dupguard view in Airflow's UI: a FastAPI app the api-server mounts at ``/dupguard``.

- :mod:`catalog`: the systems, their DAGs, gate tasks and the metrics read from task reports;
- :mod:`queries`: reads of Airflow's metadata (runs, XCom return values, task states, incidents),
  always by indexed filters with a limit;
- :mod:`charts`: SVG charts rendered on the server (no JavaScript, no CDN);
- :mod:`pages`: the HTML pages (Jinja2 templates under ``templates/``, CSS inlined);
- :mod:`app`: the routes, each behind Airflow's own authentication.

Nothing here is imported by task processes: ``dupguard_plugin`` builds the app on the first request.
"""
