"""s3s3 console scripts: argv, INI path, logging and exit codes live here and nowhere else."""
