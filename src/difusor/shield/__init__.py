"""Shield: detect and contain floods on the live access stream (see ARCHITECTURE, Shield)."""
