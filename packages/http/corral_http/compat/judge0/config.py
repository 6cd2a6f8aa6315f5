"""What Judge0's GET /config_info answers: this API's limits and which Judge0 features it has."""

from __future__ import annotations

from typing import Any

from corral_http.compat.judge0.schemas import MAX_BATCH, MAX_STACK_LIMIT_KB, STACK_LIMIT_KB
from corral_http.options import HttpOptions


def config_info(options: HttpOptions) -> dict[str, Any]:
    defaults, maxima = options.limits.defaults, options.limits.maxima
    return {
        "maintenance_mode": False,
        "enable_wait_result": True,
        "enable_compiler_options": True,
        "allowed_languages_for_compile_options": [],
        "enable_command_line_arguments": True,
        "enable_submission_delete": options.judge0_submission_delete,
        "enable_callbacks": True,
        "callbacks_max_tries": 0,
        "callbacks_timeout": 5.0,
        "enable_additional_files": True,
        "max_queue_size": options.queue_size,
        "cpu_time_limit": defaults.cpu_time_ms / 1000,
        "max_cpu_time_limit": maxima.cpu_time_ms / 1000,
        "cpu_extra_time": 0.0,
        "max_cpu_extra_time": 0.0,
        "wall_time_limit": defaults.wall_time_ms / 1000,
        "max_wall_time_limit": maxima.wall_time_ms / 1000,
        "memory_limit": defaults.memory_mb * 1024,
        "max_memory_limit": maxima.memory_mb * 1024,
        "stack_limit": STACK_LIMIT_KB,
        "max_stack_limit": MAX_STACK_LIMIT_KB,
        "max_processes_and_or_threads": defaults.max_processes,
        "max_max_processes_and_or_threads": maxima.max_processes,
        "enable_per_process_and_thread_time_limit": False,
        "allow_enable_per_process_and_thread_time_limit": False,
        "enable_per_process_and_thread_memory_limit": False,
        "allow_enable_per_process_and_thread_memory_limit": False,
        "max_file_size": defaults.max_file_size_kb,
        "max_max_file_size": maxima.max_file_size_kb,
        "number_of_runs": 1,
        "max_number_of_runs": 1,
        "redirect_stderr_to_stdout": False,
        # What an additional_files archive may expand to, in KB.
        "max_extract_size": options.sizes.max_files_bytes // 1024,
        "enable_batched_submissions": True,
        "max_submission_batch_size": MAX_BATCH,
        "submission_cache_duration": 0.0,
        "use_docs_as_homepage": False,
        "allow_enable_network": False,
        "enable_network": False,
    }


