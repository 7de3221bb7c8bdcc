-- feature view spend: compiled for duckdb
-- rows of the view
SELECT
  "user_id",
  "amount",
  CAST("ts" AS TIMESTAMP) AS "__event_ts",
  COALESCE(CAST("created" AS TIMESTAMP), CAST('0001-01-01 00:00:00' AS TIMESTAMP)) AS "__created_ts",
  CAST(file_index AS BIGINT) * 1099511627776 + file_row_number AS "__ord"
FROM READ_PARQUET(
  ['data/txns.parquet'],
  file_row_number = TRUE,
  union_by_name = TRUE
);
-- training set: point-in-time join with the entity rows (__entity_rows: keys, __ts, __row_id)
SELECT
  CAST(SUM("v"."amount") AS DOUBLE) AS "amount_sum_7d",
  CAST(COUNT("v"."amount") FILTER(WHERE
    "v"."__event_ts" > "e"."__ts" - INTERVAL '86400000000' MICROSECONDS) AS BIGINT) AS "amount_count_1d",
  CAST(ARG_MAX("v"."amount", "v"."__tie") AS DOUBLE) AS "amount_last_7d"
FROM __entity_rows AS e
LEFT JOIN (
  SELECT
    *,
    {'e': "__event_ts", 'c': "__created_ts", 'o': "__ord"} AS "__tie"
  FROM (
    SELECT
      "user_id",
      "amount",
      CAST("ts" AS TIMESTAMP) AS "__event_ts",
      COALESCE(CAST("created" AS TIMESTAMP), CAST('0001-01-01 00:00:00' AS TIMESTAMP)) AS "__created_ts",
      CAST(file_index AS BIGINT) * 1099511627776 + file_row_number AS "__ord"
    FROM READ_PARQUET(
      ['data/txns.parquet'],
      file_row_number = TRUE,
      union_by_name = TRUE
    )
  ) AS r
) AS v
  ON "e"."user_id" = "v"."user_id"
  AND (
    "v"."__event_ts" <= "e"."__ts"
    AND "v"."__event_ts" > "e"."__ts" - INTERVAL '604800000000' MICROSECONDS
  )
GROUP BY
  "e"."__row_id"
ORDER BY
  "e"."__row_id";
