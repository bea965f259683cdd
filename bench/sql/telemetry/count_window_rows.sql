-- Rows whose time lies in [window_start, window_end) (benchmark only).
SELECT count(*) FROM {table} AS w WHERE w.{time} >= %(window_start)s AND w.{time} < %(window_end)s
