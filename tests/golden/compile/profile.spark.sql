-- feature view profile: compiled for spark
-- register these tables from the source files first:
--   profile__source = data/users.parquet
-- rows of the view
SELECT
  `t`.`user_id`,
  `t`.`country`,
  CAST(`t`.`ts` AS TIMESTAMP) AS `__event_ts`,
  CAST('0001-01-01 00:00:00' AS TIMESTAMP) AS `__created_ts`,
  CAST(SHIFTRIGHT(HASH(`t`.`user_id`, `t`.`country`), 1) AS BIGINT) AS `__ord`
FROM (
  SELECT
    *
  FROM profile__source
) AS t;
-- training set: point-in-time join with the entity rows (__entity_rows: keys, __ts, __row_id)
SELECT
  `b`.`country`
FROM __entity_rows AS e
LEFT JOIN (
  SELECT
    `e`.`__row_id` AS `__row_id`,
    `v`.`country` AS `country`,
    ROW_NUMBER() OVER (
      PARTITION BY `e`.`__row_id`
      ORDER BY `v`.`__event_ts` DESC, `v`.`__created_ts` DESC, `v`.`__ord` DESC
    ) AS `__rank`
  FROM __entity_rows AS e
  INNER JOIN (
    SELECT
      `t`.`user_id`,
      `t`.`country`,
      CAST(`t`.`ts` AS TIMESTAMP) AS `__event_ts`,
      CAST('0001-01-01 00:00:00' AS TIMESTAMP) AS `__created_ts`,
      CAST(SHIFTRIGHT(HASH(`t`.`user_id`, `t`.`country`), 1) AS BIGINT) AS `__ord`
    FROM (
      SELECT
        *
      FROM profile__source
    ) AS t
  ) AS v
    ON `e`.`user_id` = `v`.`user_id`
    AND `v`.`__event_ts` <= `e`.`__ts`
    AND `v`.`__event_ts` >= `e`.`__ts` - INTERVAL '2592000000000' MICROSECONDS
) AS b
  ON `b`.`__row_id` = `e`.`__row_id` AND `b`.`__rank` = 1
ORDER BY
  `e`.`__row_id`;
