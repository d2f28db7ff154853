-- Hourly VN_AQI of every air station over the last 24 hours (local time), with its band, dominant pollutant and Vietnamese name
SELECT
    station_id,
    station_name,
    district,
    toTimeZone(window_start, 'Asia/Ho_Chi_Minh') AS hour_start,
    aqi,
    band,
    dominant,
    coverage
FROM
(
    SELECT station_id, district, window_start, window_start_ms, aqi, band, dominant, coverage
    FROM ioc.kpi_aqi FINAL
    WHERE period = 'hour' AND window_start >= now() - INTERVAL 1 DAY
) AS kpi
LEFT JOIN
(
    SELECT id AS station_id, name AS station_name
    FROM ioc.devices FINAL
) AS dev
USING station_id
ORDER BY station_id, window_start_ms;

-- The 10 most congested junctions of Hải Châu today (local day), from 5-minute levels of service: windows at level E or F, the worst level, the mean speed
SELECT
    junction_id,
    junction_name,
    count() AS windows,
    countIf(level IN ('E', 'F')) AS congested_windows,
    max(level) AS worst_level,
    round(avg(mean_speed_kmh), 1) AS avg_speed_kmh
FROM
(
    SELECT entity_id AS junction_id, level, mean_speed_kmh
    FROM ioc.kpi_traffic FINAL
    WHERE scope = 'device' AND district = 'hai_chau' AND window_size_ms = 300000
      AND toDate(window_start, 'Asia/Ho_Chi_Minh') = toDate(now(), 'Asia/Ho_Chi_Minh')
) AS kpi
LEFT JOIN
(
    SELECT id AS junction_id, name AS junction_name
    FROM ioc.devices FINAL
) AS dev
USING junction_id
GROUP BY junction_id, junction_name
ORDER BY congested_windows DESC, worst_level DESC, avg_speed_kmh ASC, junction_id
LIMIT 10;

-- The largest 24-hour rainfall per district and local day over the last 7 days, and the gauge that measured it
SELECT
    toDate(window_start, 'Asia/Ho_Chi_Minh') AS local_day,
    district,
    max(rain_24h) AS max_rain_24h_mm,
    argMax(gauge_id, rain_24h) AS wettest_gauge
FROM
(
    SELECT gauge_id, district, window_start, assumeNotNull(rain_24h_mm) AS rain_24h
    FROM ioc.kpi_hydrology FINAL
    WHERE rain_24h_mm IS NOT NULL
      AND toDate(window_start, 'Asia/Ho_Chi_Minh') >= toDate(now(), 'Asia/Ho_Chi_Minh') - 6
)
GROUP BY local_day, district
ORDER BY local_day, district;

-- Devices offline now per department: the newest device-scope health row of each registered (not removed) device, from the last day, says offline or never seen (with the views latest_kpi_health and devices_now)
SELECT
    department,
    count() AS offline_devices,
    arraySort(groupArray(device_id)) AS device_ids
FROM
(
    SELECT entity_id AS device_id, status
    FROM ioc.latest_kpi_health
    WHERE scope = 'device' AND window_start >= now() - INTERVAL 1 DAY
) AS kpi
INNER JOIN
(
    SELECT id AS device_id, department
    FROM ioc.devices_now
) AS dev
USING device_id
WHERE status IN ('offline', 'never_seen')
GROUP BY department
ORDER BY department;

-- Water-quality exceedances by station and parameter over the last 7 days, from 5-minute windows: how many windows broke the limit, the range of values, the standard
SELECT
    station_id,
    station_name,
    medium,
    parameter,
    count() AS windows,
    countIf(exceeded = 1) AS exceedances,
    round(min(value), 2) AS min_value,
    round(max(value), 2) AS max_value,
    any(standard) AS limit_standard
FROM
(
    SELECT station_id, medium, parameter, value, exceeded, standard
    FROM ioc.kpi_water FINAL
    WHERE window_size_ms = 300000 AND window_start >= now() - INTERVAL 7 DAY
) AS kpi
LEFT JOIN
(
    SELECT id AS station_id, name AS station_name
    FROM ioc.devices FINAL
) AS dev
USING station_id
GROUP BY station_id, station_name, medium, parameter
HAVING exceedances > 0
ORDER BY exceedances DESC, station_id, parameter;

-- Flood alarm levels reached per river station and local day over the last 7 days: the highest level (0 below báo động I, up to 3), the highest 5-minute mean water level and the station's alarm levels I, II, III in metres
SELECT
    local_day,
    gauge_id,
    gauge_name,
    max(level_reached) AS alarm_level,
    max(water_level) AS max_water_level_m,
    any(alarm_levels_m) AS alarm_levels_m
FROM
(
    SELECT toDate(window_start, 'Asia/Ho_Chi_Minh') AS local_day, gauge_id, assumeNotNull(alarm_level) AS level_reached, assumeNotNull(water_level_m) AS water_level
    FROM ioc.kpi_hydrology FINAL
    WHERE alarm_level IS NOT NULL
      AND toDate(window_start, 'Asia/Ho_Chi_Minh') >= toDate(now(), 'Asia/Ho_Chi_Minh') - 6
) AS kpi
LEFT JOIN
(
    SELECT id AS gauge_id, name AS gauge_name, flood_alarm_m AS alarm_levels_m
    FROM ioc.devices FINAL
) AS dev
USING gauge_id
GROUP BY local_day, gauge_id, gauge_name
ORDER BY local_day, gauge_id;

-- Camera violations (red light, lane, wrong way) per district and local hour today, from 5-minute windows, with violations per 100 vehicles seen
SELECT
    district,
    toStartOfHour(toTimeZone(window_start, 'Asia/Ho_Chi_Minh')) AS hour_start,
    sum(events) AS violations,
    round(avg(violations_per_100_vehicles), 2) AS per_100_vehicles
FROM ioc.kpi_camera FINAL
WHERE event_type = 'violations' AND window_size_ms = 300000
  AND toDate(window_start, 'Asia/Ho_Chi_Minh') = toDate(now(), 'Asia/Ho_Chi_Minh')
GROUP BY district, hour_start
ORDER BY district, hour_start;

-- Strongest gust, mean wind and largest strain per bridge and local day over the last 7 days
SELECT
    local_day,
    device_id,
    bridge_name,
    max(wind_max_ms) AS max_gust_ms,
    round(avg(wind_mean_ms), 1) AS mean_wind_ms,
    max(strain_max_ue) AS max_strain_ue
FROM
(
    SELECT toDate(window_start, 'Asia/Ho_Chi_Minh') AS local_day, device_id, wind_max_ms, wind_mean_ms, strain_max_ue
    FROM ioc.kpi_bridge FINAL
    WHERE toDate(window_start, 'Asia/Ho_Chi_Minh') >= toDate(now(), 'Asia/Ho_Chi_Minh') - 6
) AS kpi
LEFT JOIN
(
    SELECT id AS device_id, name AS bridge_name
    FROM ioc.devices FINAL
) AS dev
USING device_id
GROUP BY local_day, device_id, bridge_name
ORDER BY local_day, device_id;
