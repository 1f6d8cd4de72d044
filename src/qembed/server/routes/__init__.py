"""Route modules of the task endpoints; each exports ``router`` (and optionally ``setup``)."""
