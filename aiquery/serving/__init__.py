"""`aiquery serve`: a local emulator of Databricks model serving and the Unity AI Gateway."""
