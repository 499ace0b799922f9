"""The built-in profiles (YAML), shipped with the package as ``shopdistill.profiles``."""
