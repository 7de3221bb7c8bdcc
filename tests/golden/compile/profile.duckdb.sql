-- feature view profile: compiled for duckdb
-- rows of the view
SELECT
  "user_id",
  "country",
  CAST("ts" AS TIMESTAMP) AS "__event_ts",
  CAST('0001-01-01 00:00:00' AS TIMESTAMP) AS "__created_ts",
  CAST(file_index AS BIGINT) * 1099511627776 + file_row_number AS "__ord"
FROM READ_PARQUET(
  ['data/users.parquet'],
  file_row_number = TRUE,
  union_by_name = TRUE
);
-- training set: point-in-time join with the entity rows (__entity_rows: keys, __ts, __row_id)
SELECT
  CASE
    WHEN "v"."__event_ts" >= "e"."__ts" - INTERVAL '2592000000000' MICROSECONDS
    THEN "v"."country"
  END AS "country"
FROM __entity_rows AS e
ASOF LEFT JOIN (
  SELECT
    *,
    {'e': "__event_ts", 'c': "__created_ts", 'o': "__ord"} AS "__tie"
  FROM (
    SELECT
      "user_id",
      "country",
      CAST("ts" AS TIMESTAMP) AS "__event_ts",
      CAST('0001-01-01 00:00:00' AS TIMESTAMP) AS "__created_ts",
      CAST(file_index AS BIGINT) * 1099511627776 + file_row_number AS "__ord"
    FROM READ_PARQUET(
      ['data/users.parquet'],
      file_row_number = TRUE,
      union_by_name = TRUE
    )
  ) AS r
) AS v
  ON "e"."user_id" = "v"."user_id"
  AND {'e': "e"."__ts", 'c': CAST('9999-12-31 23:59:59' AS TIMESTAMP), 'o': CAST(9223372036854775807 AS BIGINT)} >= "v"."__tie"
ORDER BY
  "e"."__row_id";
