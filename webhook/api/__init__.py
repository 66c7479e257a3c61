"""HTTP layer: thin blueprints that parse, call the store/domain, and render."""
