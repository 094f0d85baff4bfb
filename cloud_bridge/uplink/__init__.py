"""The edge's end of the wire: the store-and-forward buffer and the MQTT publisher that drains it."""
