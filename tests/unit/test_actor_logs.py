"""Actor output: its warnings reach the console once each, everything else stays in its file."""

import os
import subprocess
import sys
import textwrap

from olmorl.actor_logs import LOG_ENV, noteworthy_lines


def test_noteworthy_lines_are_warnings_and_errors_once_whichever_process_wrote_them():
    seen: set[str] = set()
    lines = [
        "INFO 12-06 12:46:23 [core.py:1] Waiting for engine",
        "(EngineCore pid=35) WARNING 12-06 12:46:40 [vllm.py:725] Model Runner V2 requires Triton",
        "(VllmWorker-0 pid=39) WARNING 12-06 12:46:41 [vllm.py:725] Model Runner V2 requires Triton",
        "Traceback (most recent call last):",
        "  File 'x.py', line 3",
        "RuntimeError: boom",
        "a progress bar 100%",
    ]
    assert noteworthy_lines(lines, seen) == [lines[1], lines[3], lines[5]]
    again = "(Worker pid=40) WARNING 12-06 13:00:00 [vllm.py:725] Model Runner V2 requires Triton"
    assert noteworthy_lines([again, "ERROR 1 [x.py:2] new"], seen) == ["ERROR 1 [x.py:2] new"]


def test_an_actor_process_and_its_children_write_to_the_file_and_warn_on_stderr(tmp_path):
    log = tmp_path / "engine-0.log"
    script = textwrap.dedent(
        """
        import subprocess, sys, time
        from olmorl.actor_logs import capture_output
        capture_output()
        print("INFO starting", flush=True)
        subprocess.run([sys.executable, "-c", "import sys; print('WARNING from a child'); "
                        "print('INFO child', file=sys.stderr)"])
        print("WARNING from a child", flush=True)  # a repeat: relayed once
        time.sleep(1)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        env={**os.environ, LOG_ENV: str(log)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and done.stderr == "WARNING from a child\n"
    text = log.read_text()
    assert "INFO starting" in text and "INFO child" in text
    assert text.count("WARNING from a child") == 2


def test_actor_options_name_the_actor_log_file_once_the_driver_names_a_folder(tmp_path):
    from olmorl.actor_logs import actor_options, send_actor_logs_to

    send_actor_logs_to(tmp_path / "logs")
    try:
        options = actor_options("engine-1")
    finally:
        send_actor_logs_to(None)
    assert options["runtime_env"]["env_vars"][LOG_ENV] == str(tmp_path / "logs" / "engine-1.log")
    assert (tmp_path / "logs").is_dir() and actor_options("engine-1") == {}
    # Every thread a verb may run on reads OMP_NUM_THREADS; Ray's default for one CPU is 1.
    assert actor_options("learner-0", threads=2)["runtime_env"]["env_vars"] == {
        "OMP_NUM_THREADS": "2"
    }
