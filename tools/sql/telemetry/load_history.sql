-- Demo history (tools/demo_telemetry.py setup): 40 processes, 200 streams and 3 days of blocks from
-- the bound start time t0, one block every 6 s (n blocks), with every kind of duplicate the cleanup
-- handles, all in the first day. Statements are separated by a blank line and run one at a time.
WITH procs AS (
    SELECT md5('proc' || p)::uuid AS process_id, p FROM generate_series(1, 40) AS p
)
INSERT INTO processes (process_id, exe, username, realname, computer, distro, cpu_brand, tsc_frequency,
                       start_time, start_ticks, insert_time, parent_process_id, properties)
SELECT process_id, 'game-server-' || p, 'svc', 'Service', 'host-' || (p %% 7), 'debian', 'x86', 3000000000,
       %(t0)s::timestamptz + p * interval '1 hour', p * 1000,
       %(t0)s::timestamptz + p * interval '1 hour', NULL, ARRAY[ROW('env', 'demo')::micromegas_property]
FROM procs;

INSERT INTO processes  -- retried process registrations: 1 in 5, 3-60 s later; two with a NULL time
SELECT process_id, exe, username, realname, computer, distro, cpu_brand, tsc_frequency, start_time, start_ticks,
       CASE WHEN start_ticks IN (5000, 10000) THEN NULL ELSE insert_time + (3 + start_ticks %% 57) * interval '1 second' END,
       parent_process_id, properties
FROM processes WHERE start_ticks %% 5000 = 0 AND insert_time < %(t0)s::timestamptz + interval '1 day';

INSERT INTO streams (stream_id, process_id, tags, properties, insert_time)
SELECT md5('stream' || s)::uuid, md5('proc' || (1 + s %% 40))::uuid, ARRAY['log', 'metrics'],
       ARRAY[ROW('kind', 'log')::micromegas_property], %(t0)s::timestamptz + s * interval '20 minutes'
FROM generate_series(1, 200) AS s;

INSERT INTO streams  -- retried stream registrations
SELECT stream_id, process_id, dependencies_metadata, objects_metadata, tags, properties, insert_time + interval '7 seconds'
FROM streams WHERE get_byte(decode(md5(stream_id::text), 'hex'), 0) < 20
  AND insert_time < %(t0)s::timestamptz + interval '1 day';

INSERT INTO blocks (block_id, stream_id, process_id, begin_time, begin_ticks, end_time, end_ticks,
                    nb_objects, object_offset, payload_size, insert_time)
SELECT id, md5('stream' || (1 + g %% 200))::uuid, md5('proc' || (1 + g %% 40))::uuid,
       t - interval '1 second', g * 100, t, g * 100 + 99, 1 + g %% 64, g * 64, 256 + g %% 8192,
       CASE WHEN kind = 'null' THEN NULL ELSE t + delay END
FROM (
    SELECT g, gen_random_uuid() AS id, %(t0)s::timestamptz + g * interval '6 seconds' AS t
    FROM generate_series(1, %(n)s) AS g
) AS base
CROSS JOIN LATERAL (
    SELECT 'first' AS kind, interval '0' AS delay
    UNION ALL SELECT 'retry', (1 + g %% 90) * interval '1 second' WHERE g %% 40 = 0 AND g < 14400
    UNION ALL SELECT 'retry2', (91 + g %% 30) * interval '1 second' WHERE g %% 400 = 0 AND g < 14400
    UNION ALL SELECT 'tie', interval '0' WHERE g %% 500 = 7 AND g < 14400
    UNION ALL SELECT 'null', interval '0' WHERE g %% 700 = 11 AND g < 14400
) AS copies;
