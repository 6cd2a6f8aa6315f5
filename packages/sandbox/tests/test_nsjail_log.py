"""Reading how a run ended from NsJail's log (samples from NsJail 3.6 on a Debian 12 host)."""

from __future__ import annotations

from corral_sandbox.nsjail_log import parse

HEAD = """\
[I][2026-11-26T14:04:23+0000] Mode: STANDALONE_ONCE
[I][2026-11-26T14:04:23+0000] Jail parameters: hostname:'corral', chroot:'', process:'/usr/bin/python3'
[I][2026-11-26T14:04:23+0000] Mount: '/usr' -> '/usr' type:'' options:''
[I][2026-11-26T14:04:23+0000] Executing '/usr/bin/python3' for '[STANDALONE MODE]'
"""


def test_an_exit_status() -> None:
    log = parse(
        HEAD + "[I][2026-11-26T14:04:27+0000] pid=14360 ([STANDALONE MODE]) exited with status: 137, (PIDs left: 0)\n"
    )
    assert (log.exit_code, log.signal, log.time_limit, log.errors, log.ended) == (137, None, False, (), True)


def test_a_signal() -> None:
    log = parse(
        HEAD
        + "[I][2026-11-26T14:04:29+0000] pid=14372 ([STANDALONE MODE]) terminated with signal: SIGKILL (9), (PIDs left: 0)\n"
    )
    assert (log.exit_code, log.signal) == (None, 9)


def test_nsjails_own_time_limit() -> None:
    log = parse(
        HEAD
        + "[I][2026-11-26T14:07:39+0000] pid=24274 run time >= time limit (1 >= 1) ([STANDALONE MODE]). Killing it\n"
        + "[I][2026-11-26T14:07:39+0000] pid=24274 ([STANDALONE MODE]) terminated with signal: SIGKILL (9), (PIDs left: 0)\n"
    )
    assert log.time_limit and log.signal == 9


def test_a_launch_failure_is_an_error_even_with_an_exit_line() -> None:
    log = parse(
        HEAD
        + "[E][2026-11-26T14:04:29+0000][1] newProc():232 execve('/usr/bin/nonexistent') failed: No such file or directory\n"
        + "[F][2026-11-26T14:04:29+0000][1] runChild():506 Launching child process failed\n"
        + "[W][2026-11-26T14:04:29+0000][14431] runChild():526 Received error message from the child process before it has been executed\n"
        + "[E][2026-11-26T14:04:29+0000][14431] standaloneMode():274 Couldn't launch the child process\n"
        + "[I][2026-11-26T14:04:29+0000] pid=14432 ([STANDALONE MODE]) terminated with signal: SIGKILL (9), (PIDs left: 0)\n"
    )
    assert len(log.errors) == 3 and "execve('/usr/bin/nonexistent') failed" in log.errors[0]


def test_warnings_are_not_errors() -> None:
    log = parse(
        HEAD
        + "[W][2026-11-26T14:05:15+0000][17935] seccompViolation():291 pid=17936 committed a syscall/seccomp violation and exited with SIGSYS\n"
        + "[I][2026-11-26T14:05:15+0000] pid=17936 ([STANDALONE MODE]) terminated with signal: SIGSYS (31), (PIDs left: 0)\n"
    )
    assert (log.errors, log.signal) == ((), 31)


def test_an_empty_log_says_nothing_ended() -> None:
    assert not parse("").ended
