-- The window-only reference (benchmark only): group the window's rows by id having count > 1,
-- keep min(time), delete the others of the window. Misses a retry whose first copy is older than
-- the window, copies with identical times, and copies with a NULL time.
WITH dups AS (
    SELECT w.{id} AS id, min(w.{time}) AS keep_time
    FROM {table} AS w
    WHERE w.{time} >= %(window_start)s AND w.{time} < %(window_end)s
    GROUP BY w.{id}
    HAVING count(*) > 1
),
deleted AS (
    DELETE FROM {table} AS t
    USING dups AS d
    WHERE t.{id} = d.id
      AND t.{time} > d.keep_time
      AND t.{time} >= %(window_start)s AND t.{time} < %(window_end)s
    RETURNING t.{id} AS id
)
SELECT count(*) AS rows_deleted, count(DISTINCT id) AS ids_affected FROM deleted;
