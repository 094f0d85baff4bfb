"""The wire contract (MQTT, JSON, version 1): topics, messages and their codec (`codec`), and the MQTT
client both ends connect with (`mqtt`)."""
