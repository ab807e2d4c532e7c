"""The server: MQTT ingest into PostgreSQL, schema and migrations, REST API, dashboard."""
