"""Exchange trade producers: WebSocket feeds normalized into one trade schema, produced to Kafka."""
