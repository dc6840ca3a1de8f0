"""HTTP and WebSocket front end: thin protocol adapters over the engine's event model."""
