-- feature view big: compiled for duckdb
-- rows of the view
SELECT
  "t"."user_id",
  "t"."is_big",
  CAST("t"."ts" AS TIMESTAMP) AS "__event_ts",
  CAST('0001-01-01 00:00:00' AS TIMESTAMP) AS "__created_ts",
  CAST(HASH("t"."user_id", "t"."is_big") >> 1 AS BIGINT) AS "__ord"
FROM (
  SELECT
    user_id,
    ts,
    amount2 > 100 AS is_big
  FROM (
    SELECT
      "r"."user_id",
      "r"."amount2",
      "r"."country",
      "r"."__event_ts" AS "ts",
      "r"."__created_ts" AS "created"
    FROM (
      SELECT
        "t"."user_id",
        "t"."amount2",
        "t"."country",
        CAST("t"."ts" AS TIMESTAMP) AS "__event_ts",
        COALESCE(CAST("t"."created" AS TIMESTAMP), CAST('0001-01-01 00:00:00' AS TIMESTAMP)) AS "__created_ts"
      FROM (
        SELECT
          t.user_id,
          t.ts,
          t.created,
          t.amount * 2 AS amount2,
          u.country /* doubled */
        FROM (
          SELECT
            *
          FROM READ_PARQUET(
            ['data/txns.parquet'],
            union_by_name = TRUE
          )
        ) AS t
        JOIN (
          SELECT
            *
          FROM READ_PARQUET(
            ['data/users.parquet'],
            union_by_name = TRUE
          )
        ) AS u
          USING (user_id)
        WHERE
          NOT t.amount IS NULL
      ) AS t
    ) AS r
  ) AS source
) AS t;
-- training set: point-in-time join with the entity rows (__entity_rows: keys, __ts, __row_id)
SELECT
  "v"."is_big" AS "is_big"
FROM __entity_rows AS e
ASOF LEFT JOIN (
  SELECT
    *,
    {'e': "__event_ts", 'c': "__created_ts", 'o': "__ord"} AS "__tie"
  FROM (
    SELECT
      "t"."user_id",
      "t"."is_big",
      CAST("t"."ts" AS TIMESTAMP) AS "__event_ts",
      CAST('0001-01-01 00:00:00' AS TIMESTAMP) AS "__created_ts",
      CAST(HASH("t"."user_id", "t"."is_big") >> 1 AS BIGINT) AS "__ord"
    FROM (
      SELECT
        user_id,
        ts,
        amount2 > 100 AS is_big
      FROM (
        SELECT
          "r"."user_id",
          "r"."amount2",
          "r"."country",
          "r"."__event_ts" AS "ts",
          "r"."__created_ts" AS "created"
        FROM (
          SELECT
            "t"."user_id",
            "t"."amount2",
            "t"."country",
            CAST("t"."ts" AS TIMESTAMP) AS "__event_ts",
            COALESCE(CAST("t"."created" AS TIMESTAMP), CAST('0001-01-01 00:00:00' AS TIMESTAMP)) AS "__created_ts"
          FROM (
            SELECT
              t.user_id,
              t.ts,
              t.created,
              t.amount * 2 AS amount2,
              u.country /* doubled */
            FROM (
              SELECT
                *
              FROM READ_PARQUET(
                ['data/txns.parquet'],
                union_by_name = TRUE
              )
            ) AS t
            JOIN (
              SELECT
                *
              FROM READ_PARQUET(
                ['data/users.parquet'],
                union_by_name = TRUE
              )
            ) AS u
              USING (user_id)
            WHERE
              NOT t.amount IS NULL
          ) AS t
        ) AS r
      ) AS source
    ) AS t
  ) AS r
) AS v
  ON "e"."user_id" = "v"."user_id"
  AND {'e': "e"."__ts", 'c': CAST('9999-12-31 23:59:59' AS TIMESTAMP), 'o': CAST(9223372036854775807 AS BIGINT)} >= "v"."__tie"
ORDER BY
  "e"."__row_id";
