-- flowhook.events into ClickHouse (docs/scale-out.md): a Kafka engine table
-- reading the topic in one consumer group, a MergeTree table holding one row
-- per event, and the materialized view that moves rows between them.
-- For ClickHouse 21.8 and later (the JSONAsString format and the
-- JSONExtract functions); the messages are flowhook's JSON lines
-- (kafka.format = "json"). Replace kafka-0:9092 with your brokers.

CREATE DATABASE IF NOT EXISTS flowhook;

CREATE TABLE IF NOT EXISTS flowhook.events_queue
(
    message String
)
ENGINE = Kafka
SETTINGS
    kafka_broker_list = 'kafka-0:9092',
    kafka_topic_list = 'flowhook.events',
    kafka_group_name = 'clickhouse-flowhook-events',
    kafka_format = 'JSONAsString',
    -- one consumer per partition at most; more consumers than partitions idle
    kafka_num_consumers = 1,
    kafka_handle_error_mode = 'stream';

CREATE TABLE IF NOT EXISTS flowhook.events
(
    event LowCardinality(String),
    time DateTime64(3, 'UTC'),
    key FixedString(16),
    exporter IPv6,
    observation_domain UInt32,
    cli_ip IPv6,
    srv_ip IPv6,
    cli_port UInt16,
    srv_port UInt16,
    proto_l4 LowCardinality(String),
    proto_l7 LowCardinality(String),
    cli2srv_bytes UInt64,
    srv2cli_bytes UInt64,
    cli2srv_packets UInt64,
    srv2cli_packets UInt64,
    first_seen DateTime64(3, 'UTC'),
    last_seen DateTime64(3, 'UTC'),
    in_if UInt32,
    out_if UInt32,
    vlan UInt16,
    sampling_interval UInt32,
    cli_country LowCardinality(String),
    srv_country LowCardinality(String),
    cli_asn UInt32,
    srv_asn UInt32,
    status Array(LowCardinality(String)),
    score UInt16,
    end_reason LowCardinality(String),
    -- the whole line, for keys not broken out above
    raw String CODEC(ZSTD(3))
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(time)
ORDER BY (event, time, exporter)
TTL toDateTime(time) + INTERVAL 30 DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS flowhook.events_mv TO flowhook.events AS
SELECT
    JSONExtractString(message, 'event') AS event,
    parseDateTime64BestEffort(JSONExtractString(message, 'time'), 3, 'UTC') AS time,
    toFixedString(JSONExtractString(message, 'flow', 'key'), 16) AS key,
    toIPv6(JSONExtractString(message, 'flow', 'exporter')) AS exporter,
    JSONExtractUInt(message, 'flow', 'observation_domain') AS observation_domain,
    toIPv6(JSONExtractString(message, 'flow', 'cli.ip')) AS cli_ip,
    toIPv6(JSONExtractString(message, 'flow', 'srv.ip')) AS srv_ip,
    JSONExtractUInt(message, 'flow', 'cli.port') AS cli_port,
    JSONExtractUInt(message, 'flow', 'srv.port') AS srv_port,
    JSONExtractString(message, 'flow', 'proto.l4') AS proto_l4,
    JSONExtractString(message, 'flow', 'proto.l7') AS proto_l7,
    JSONExtractUInt(message, 'flow', 'cli2srv.bytes') AS cli2srv_bytes,
    JSONExtractUInt(message, 'flow', 'srv2cli.bytes') AS srv2cli_bytes,
    JSONExtractUInt(message, 'flow', 'cli2srv.packets') AS cli2srv_packets,
    JSONExtractUInt(message, 'flow', 'srv2cli.packets') AS srv2cli_packets,
    toDateTime64(JSONExtractFloat(message, 'flow', 'first_seen'), 3, 'UTC') AS first_seen,
    toDateTime64(JSONExtractFloat(message, 'flow', 'last_seen'), 3, 'UTC') AS last_seen,
    JSONExtractUInt(message, 'flow', 'in_if') AS in_if,
    JSONExtractUInt(message, 'flow', 'out_if') AS out_if,
    JSONExtractUInt(message, 'flow', 'vlan') AS vlan,
    JSONExtractUInt(message, 'flow', 'sampling_interval') AS sampling_interval,
    JSONExtractString(message, 'flow', 'cli.country') AS cli_country,
    JSONExtractString(message, 'flow', 'srv.country') AS srv_country,
    JSONExtractUInt(message, 'flow', 'cli.asn') AS cli_asn,
    JSONExtractUInt(message, 'flow', 'srv.asn') AS srv_asn,
    JSONExtract(message, 'flow', 'status', 'Array(String)') AS status,
    JSONExtractUInt(message, 'flow', 'score') AS score,
    JSONExtractString(message, 'flow', 'end_reason') AS end_reason,
    message AS raw
FROM flowhook.events_queue
WHERE length(_error) = 0;
