"""The home hub agent: BLE with bleak, GATT parsers, the durable outbox, the MQTT publisher."""
