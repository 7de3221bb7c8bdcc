-- feature view spend: compiled for spark
-- register these tables from the source files first:
--   spend__source = data/txns.parquet
-- rows of the view
SELECT
  `t`.`user_id`,
  `t`.`amount`,
  CAST(`t`.`ts` AS TIMESTAMP) AS `__event_ts`,
  COALESCE(CAST(`t`.`created` AS TIMESTAMP), CAST('0001-01-01 00:00:00' AS TIMESTAMP)) AS `__created_ts`,
  CAST(SHIFTRIGHT(HASH(`t`.`user_id`, `t`.`amount`), 1) AS BIGINT) AS `__ord`
FROM (
  SELECT
    *
  FROM spend__source
) AS t;
-- training set: point-in-time join with the entity rows (__entity_rows: keys, __ts, __row_id)
SELECT
  CAST(SUM(`v`.`amount`) AS DOUBLE) AS `amount_sum_7d`,
  CAST(COUNT(`v`.`amount`) FILTER(WHERE
    `v`.`__event_ts` > `e`.`__ts` - INTERVAL '86400000000' MICROSECONDS) AS BIGINT) AS `amount_count_1d`,
  CAST(MAX_BY(`v`.`amount`, `v`.`__tie`) AS DOUBLE) AS `amount_last_7d`
FROM __entity_rows AS e
LEFT JOIN (
  SELECT
    *,
    STRUCT(`__event_ts` AS e, `__created_ts` AS c, `__ord` AS o) AS `__tie`
  FROM (
    SELECT
      `t`.`user_id`,
      `t`.`amount`,
      CAST(`t`.`ts` AS TIMESTAMP) AS `__event_ts`,
      COALESCE(CAST(`t`.`created` AS TIMESTAMP), CAST('0001-01-01 00:00:00' AS TIMESTAMP)) AS `__created_ts`,
      CAST(SHIFTRIGHT(HASH(`t`.`user_id`, `t`.`amount`), 1) AS BIGINT) AS `__ord`
    FROM (
      SELECT
        *
      FROM spend__source
    ) AS t
  ) AS r
) AS v
  ON `e`.`user_id` = `v`.`user_id`
  AND (
    `v`.`__event_ts` <= `e`.`__ts`
    AND `v`.`__event_ts` > `e`.`__ts` - INTERVAL '604800000000' MICROSECONDS
  )
GROUP BY
  `e`.`__row_id`
ORDER BY
  `e`.`__row_id`;
