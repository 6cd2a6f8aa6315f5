"""Every runtime of nsjail/runtimes.toml in real jails: the compile stage, and each language's
own idiom of the attacks (a C fork bomb, a Java thread bomb, a Node network request...)."""

from __future__ import annotations

import pytest

from corral_core.job import RunRequest, RunResult, Verdict
from corral_core.policy import DEFAULT_LIMIT_POLICY
from corral_sandbox import NsJailSandbox
from corral_testbed.nsjail_host import nsjail_sandbox

HELLO = {
    "c": '#include <stdio.h>\nint main(int c, char **v) { char s[64]; scanf("%63s", s); printf("hi %s %s\\n", s, v[1]); return 0; }\n',
    "cpp": '#include <iostream>\n#include <string>\nint main(int c, char **v) { std::string s; std::cin >> s; std::cout << "hi " << s << " " << v[1] << "\\n"; }\n',
    "javascript": 'const s = require("fs").readFileSync(0, "utf8").trim(); console.log(`hi ${s} ${process.argv[2]}`);\n',
    "bash": 'read s; echo "hi $s $1"\n',
}

BROKEN = {
    "c": "int main(void) { return missing; }\n",
    "cpp": "int main() { undeclared(); }\n",
}

# Each language's own way to try what no job may do, and the verdict it must get.
ATTACKS = [
    ("c", "fork_bomb", "#include <unistd.h>\nint main(void) { for (;;) fork(); }\n", {Verdict.TIME_LIMIT_EXCEEDED}),
    ("c", "memory_bomb", "#include <stdlib.h>\n#include <string.h>\nint main(void) { for (;;) { char *p = malloc(1 << 20); memset(p, 1, 1 << 20); } }\n", {Verdict.MEMORY_LIMIT_EXCEEDED}),
    ("c", "output_flood", "#include <stdio.h>\nint main(void) { for (;;) puts(\"flood flood flood\"); }\n", {Verdict.OUTPUT_LIMIT_EXCEEDED}),
    ("c", "write_outside_box", '#include <stdio.h>\nint main(void) { FILE *f = fopen("/usr/pwned", "w"); puts(f ? "WROTE" : "refused"); return f != 0; }\n', {Verdict.OK}),
    ("c", "read_host_secret", '#include <stdio.h>\nint main(void) { FILE *f = fopen("/etc/shadow", "r"); puts(f ? "READ" : "refused"); return f != 0; }\n', {Verdict.OK}),
    ("c", "network", '#include <stdio.h>\n#include <sys/socket.h>\nint main(void) { int s = socket(AF_INET, SOCK_STREAM, 0); puts(s < 0 ? "refused" : "SOCKET"); return s >= 0; }\n', {Verdict.OK}),
    ("javascript", "network", 'require("http").get("http://127.0.0.1:6379/", () => console.log("CONNECTED")).on("error", (e) => console.log("refused"));\n', {Verdict.OK}),
    ("javascript", "memory_bomb", "const a = []; for (;;) a.push(new Array(1e6).fill(1));\n", {Verdict.MEMORY_LIMIT_EXCEEDED, Verdict.RUNTIME_ERROR}),
    ("javascript", "read_host_secret", 'try { require("fs").readFileSync("/etc/shadow"); console.log("READ"); } catch { console.log("refused"); }\n', {Verdict.OK}),
    ("bash", "fork_bomb", ":(){ :|:& };:\n", {Verdict.TIME_LIMIT_EXCEEDED, Verdict.OK, Verdict.RUNTIME_ERROR}),
    ("bash", "write_outside_box", 'echo x > /usr/pwned 2>/dev/null && echo WROTE || echo refused\n', {Verdict.OK}),
]


@pytest.fixture(scope="module")
def sandbox() -> NsJailSandbox:
    return nsjail_sandbox()


def request(language: str, code: str, **changes: object) -> RunRequest:
    limits = DEFAULT_LIMIT_POLICY.defaults
    for runtime in nsjail_sandbox().runtimes():
        if runtime.language == language:
            limits = DEFAULT_LIMIT_POLICY.for_runtime(runtime).defaults
    return RunRequest(language=language, code=code, limits=limits, **changes)  # type: ignore[arg-type]


def offered(sandbox: NsJailSandbox, language: str) -> None:
    if language not in {runtime.language for runtime in sandbox.runtimes()}:
        pytest.fail(f"{language} is not offered here ({sandbox.runtimes()}): run the install step (scripts/install-system-deps.sh)")


def explain(result: RunResult) -> str:
    return f"{result.verdict} exit={result.exit_code} signal={result.signal}\n{result.compile_output}\n{result.stdout}\n{result.stderr}"


@pytest.mark.parametrize("language", sorted(HELLO))
async def test_hello_with_stdin_and_arguments(sandbox: NsJailSandbox, language: str) -> None:
    offered(sandbox, language)
    result = await sandbox.run(request(language, HELLO[language], stdin="there\n", args=("arg1",)))
    assert result.verdict is Verdict.OK, explain(result)
    assert result.stdout == "hi there arg1\n"


@pytest.mark.parametrize("language", sorted(BROKEN))
async def test_code_that_does_not_compile_is_a_compile_error_with_the_compilers_output(
    sandbox: NsJailSandbox, language: str
) -> None:
    offered(sandbox, language)
    result = await sandbox.run(request(language, BROKEN[language]))
    assert result.verdict is Verdict.COMPILE_ERROR, explain(result)
    assert result.compile is not None and result.compile.verdict is Verdict.RUNTIME_ERROR
    assert result.compile_output.strip() and result.stdout == ""


async def test_a_compile_that_runs_out_of_memory_says_so(sandbox: NsJailSandbox) -> None:
    offered(sandbox, "cpp")
    # The whole standard library parsed and optimised: far more than 24 MiB for g++.
    code = "#include <bits/stdc++.h>\nint main() { std::map<int, std::vector<std::string>> m; return m.size(); }\n"
    base = request("cpp", code)
    tight = RunRequest(language="cpp", code=code, limits=base.limits.__class__(
        **{**{name: getattr(base.limits, name) for name in base.limits.__struct_fields__}, "compile_memory_mb": 24}
    ))
    result = await sandbox.run(tight)
    assert result.verdict is Verdict.COMPILE_ERROR, explain(result)
    assert result.compile is not None and result.compile.verdict is Verdict.MEMORY_LIMIT_EXCEEDED
    assert "compile memory limit" in result.compile_output


async def test_only_the_artifact_reaches_the_run(sandbox: NsJailSandbox) -> None:
    offered(sandbox, "c")
    code = '#include <stdio.h>\n#include <dirent.h>\nint main(void) { DIR *d = opendir("."); struct dirent *e; while ((e = readdir(d))) if (e->d_name[0] != \'.\') puts(e->d_name); }\n'
    result = await sandbox.run(request("c", code))
    assert result.verdict is Verdict.OK, explain(result)
    assert result.stdout.split() == ["main"]


@pytest.mark.parametrize(("language", "name", "code", "verdicts"), ATTACKS, ids=[f"{a[0]}-{a[1]}" for a in ATTACKS])
async def test_attacks_in_each_languages_idiom(
    sandbox: NsJailSandbox, language: str, name: str, code: str, verdicts: set[Verdict]
) -> None:
    offered(sandbox, language)
    result = await sandbox.run(request(language, code))
    assert result.verdict in verdicts, explain(result)
    for marker in ("WROTE", "READ", "SOCKET", "CONNECTED"):
        assert marker not in result.stdout
