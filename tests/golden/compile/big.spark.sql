-- feature view big: compiled for spark
-- register these tables from the source files first:
--   enriched__t = data/txns.parquet
--   enriched__u = data/users.parquet
-- rows of the view
SELECT
  `t`.`user_id`,
  `t`.`is_big`,
  CAST(`t`.`ts` AS TIMESTAMP) AS `__event_ts`,
  CAST('0001-01-01 00:00:00' AS TIMESTAMP) AS `__created_ts`,
  CAST(SHIFTRIGHT(HASH(`t`.`user_id`, `t`.`is_big`), 1) AS BIGINT) AS `__ord`
FROM (
  SELECT
    user_id,
    ts,
    amount2 > 100 AS is_big
  FROM (
    SELECT
      `r`.`user_id`,
      `r`.`amount2`,
      `r`.`country`,
      `r`.`__event_ts` AS `ts`,
      `r`.`__created_ts` AS `created`
    FROM (
      SELECT
        `t`.`user_id`,
        `t`.`amount2`,
        `t`.`country`,
        CAST(`t`.`ts` AS TIMESTAMP) AS `__event_ts`,
        COALESCE(CAST(`t`.`created` AS TIMESTAMP), CAST('0001-01-01 00:00:00' AS TIMESTAMP)) AS `__created_ts`
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
          FROM enriched__t
        ) AS t
        JOIN (
          SELECT
            *
          FROM enriched__u
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
  `b`.`is_big`
FROM __entity_rows AS e
LEFT JOIN (
  SELECT
    `e`.`__row_id` AS `__row_id`,
    `v`.`is_big` AS `is_big`,
    ROW_NUMBER() OVER (
      PARTITION BY `e`.`__row_id`
      ORDER BY `v`.`__event_ts` DESC, `v`.`__created_ts` DESC, `v`.`__ord` DESC
    ) AS `__rank`
  FROM __entity_rows AS e
  INNER JOIN (
    SELECT
      `t`.`user_id`,
      `t`.`is_big`,
      CAST(`t`.`ts` AS TIMESTAMP) AS `__event_ts`,
      CAST('0001-01-01 00:00:00' AS TIMESTAMP) AS `__created_ts`,
      CAST(SHIFTRIGHT(HASH(`t`.`user_id`, `t`.`is_big`), 1) AS BIGINT) AS `__ord`
    FROM (
      SELECT
        user_id,
        ts,
        amount2 > 100 AS is_big
      FROM (
        SELECT
          `r`.`user_id`,
          `r`.`amount2`,
          `r`.`country`,
          `r`.`__event_ts` AS `ts`,
          `r`.`__created_ts` AS `created`
        FROM (
          SELECT
            `t`.`user_id`,
            `t`.`amount2`,
            `t`.`country`,
            CAST(`t`.`ts` AS TIMESTAMP) AS `__event_ts`,
            COALESCE(CAST(`t`.`created` AS TIMESTAMP), CAST('0001-01-01 00:00:00' AS TIMESTAMP)) AS `__created_ts`
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
              FROM enriched__t
            ) AS t
            JOIN (
              SELECT
                *
              FROM enriched__u
            ) AS u
              USING (user_id)
            WHERE
              NOT t.amount IS NULL
          ) AS t
        ) AS r
      ) AS source
    ) AS t
  ) AS v
    ON `e`.`user_id` = `v`.`user_id` AND `v`.`__event_ts` <= `e`.`__ts`
) AS b
  ON `b`.`__row_id` = `e`.`__row_id` AND `b`.`__rank` = 1
ORDER BY
  `e`.`__row_id`;
