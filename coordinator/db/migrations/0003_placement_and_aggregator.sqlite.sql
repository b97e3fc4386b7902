-- Jobs submitted before version 3 kept their placement only inside the config JSON.
UPDATE jobs SET
    require_docker = coalesce(json_extract(config, '$.require_docker'), 0),
    require_gpu = coalesce(json_extract(config, '$.require_gpu'), 0),
    min_cpus = coalesce(json_extract(config, '$.min_cpus'), 0),
    min_memory_mb = coalesce(json_extract(config, '$.min_memory_mb'), 0),
    arch = json_extract(config, '$.arch');
