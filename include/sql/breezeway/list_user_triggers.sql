-- The table's enabled user triggers with their mode (O origin, A always, R replica), the
-- change-log trigger aside: the swap disables them for its reload and restores each mode.
SELECT tgname, tgenabled::text AS mode
  FROM pg_trigger
 WHERE tgrelid = %(oid)s AND NOT tgisinternal AND tgenabled <> 'D' AND tgname <> %(change_log)s
