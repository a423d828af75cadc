"""The `gar` command line: commands (app) and rich views of state and traces."""
