-- Mutations of one table, newest first, with their age on the server's clock.
SELECT mutation_id, command, create_time, is_done, is_killed, parts_to_do,
       latest_fail_reason, latest_fail_time,
       dateDiff('second', create_time, now()) AS age_seconds
FROM system.mutations
WHERE database = {db:String} AND table = {table:String}
ORDER BY create_time DESC, mutation_id DESC
