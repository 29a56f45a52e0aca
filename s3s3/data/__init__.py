"""Files shipped with the package: the INI template and the supervisord configuration."""
